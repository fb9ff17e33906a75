"""Two `batchops apply --wait` processes at once on the same manifests: both exit 0, the backend
holds one dataset and one job per declaration, and the results are complete and verified.
Deterministic IDs make the second create a 409 that is confirmed as ours (DESIGN.md section 2).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import (
    APPLY,
    GatedServer,
    assert_no_duplicates,
    assert_results_verified,
    spawn,
    write_project,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOBS = 6


@pytest.mark.parametrize("rows", [30, 3000])  # 3000: the two uploads and downloads overlap
def test_two_applies_at_once_converge_without_duplicates(
    tmp_path: Path, gated: Callable[..., GatedServer], capsys: pytest.CaptureFixture[str],
    rows: int,
) -> None:
    server = gated(row_delay=0.0001)
    root = tmp_path / "repo"
    write_project(root, rows=rows, jobs=JOBS)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [spawn(root, server.base_url, *APPLY, log=log) for log in logs]
    codes = [proc.wait(120) for proc in procs]
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
    assert_no_duplicates(server.base_url, "local", root,
                         jobs=[f"job{k}" for k in range(JOBS)], datasets=["prompts"])  # fmt: skip
    assert_results_verified(root, server.base_url, "local", [f"r{i}" for i in range(rows)],
                            capsys)  # fmt: skip
