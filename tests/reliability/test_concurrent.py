"""Two `batchops apply --wait` processes at once on the same manifests, on each provider kind:
both exit 0 and the results are complete and verified. On Fireworks the backend holds one dataset
and one job per declaration: deterministic IDs make the second create a 409 that is confirmed as
ours (DESIGN.md section 2). On an OpenAI-compatible provider IDs are the server's, so both may
create a batch for a part; the next pass cancels the younger (at most one per part and apply).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import (
    APPLY,
    GatedServer,
    assert_converged,
    openai_url,
    spawn,
    write_project,
)
from tests.reliability.openai_world import PROVIDERS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOBS = 6


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("rows", [30, 3000])  # 3000: the two uploads and downloads overlap
def test_two_applies_at_once_converge_without_duplicates(
    tmp_path: Path,
    gated: Callable[..., GatedServer],
    capsys: pytest.CaptureFixture[str],
    rows: int,
    provider: str,
) -> None:
    server = gated(row_delay=0.0001)
    root = tmp_path / "repo"
    write_project(root, rows=rows, jobs=JOBS, openai_url=openai_url(server.base_url, provider))
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [spawn(root, server.base_url, *APPLY, log=log) for log in logs]
    codes = [proc.wait(120) for proc in procs]
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
    if provider == "openai":  # the pass after cancels a duplicate either apply created
        assert spawn(root, server.base_url, *APPLY).wait(120) == 0
    assert_converged(
        provider, server.base_url, "local", root, capsys, jobs=JOBS, rows=rows, extra_allowed=JOBS
    )
