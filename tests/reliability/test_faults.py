"""`apply --wait` against a backend that fails 10% of requests (429 with Retry-After, 500, 503,
dropped connections, on the API and on signed-URL transfers) plus latency spikes: the examples
and generated jobs (200 on Fireworks, 30 on an OpenAI-compatible provider, split into parts)
converge with every result file verified; no duplicate on Fireworks, and on the OpenAI-compatible
provider only the batches whose create answer was lost, cancelled by the next pass.

Also the regression test for a bug the soak found: a job pruned and later declared again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.identity import project_from_root
from batchops.local.config import FaultConfig
from batchops.providers.fireworks.wire import JOB_STATE_COMPLETED, resource_id
from tests.reliability.conftest import (
    APPLY,
    GatedServer,
    assert_converged,
    assert_results_verified,
    openai_url,
    remote,
    spawn,
    write_project,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FAULTS = FaultConfig(
    rate_429=0.025,
    rate_500=0.025,
    rate_503=0.025,
    rate_drop=0.025,
    latency=0.3,
    latency_rate=0.02,
    retry_after=0.2,
    on_transfers=True,
    seed=11,
)


def assert_unique_remote(url: str, account: str, root: Path, jobs: int) -> None:
    """One remote job per declared job, all COMPLETED; one dataset per content."""
    remote_jobs, datasets = remote(url, account, project_from_root(root))
    ids = [resource_id(j.name or "") for j in remote_jobs]
    assert len(ids) == len(set(ids)) == jobs, sorted(ids)
    assert {j.state for j in remote_jobs} == {JOB_STATE_COMPLETED}
    names = [resource_id(d.name or "").rsplit("-", 1)[0] for d in datasets]
    assert len(names) == len(set(names)), names


def test_the_examples_converge_through_faults(
    tmp_path: Path, gated: Callable[..., GatedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = gated(faults=FAULTS)
    root = tmp_path / "examples"
    shutil.copytree(
        REPO / "jobs", root / "jobs", ignore=shutil.ignore_patterns("capitals-openai.yaml")
    )
    proc = spawn(root, server.base_url, *APPLY, log=tmp_path / "apply.log")
    assert proc.wait(120) == 0, (tmp_path / "apply.log").read_text()[-3000:]
    jobs = status_of(root, server, capsys)
    assert_unique_remote(server.base_url, "local", root, len(jobs))
    assert_results_verified(root, server.base_url, "local", None, capsys)


@pytest.mark.parametrize(("provider", "jobs"), [("fireworks", 200), ("openai", 30)])
def test_many_jobs_converge_through_faults(
    tmp_path: Path,
    gated: Callable[..., GatedServer],
    capsys: pytest.CaptureFixture[str],
    provider: str,
    jobs: int,
) -> None:
    server = gated(faults=FAULTS)
    root = tmp_path / "many"
    write_project(root, rows=10, jobs=jobs, openai_url=openai_url(server.base_url, provider), cap=4)
    proc = spawn(root, server.base_url, *APPLY, log=tmp_path / "apply.log")
    assert proc.wait(240) == 0, (tmp_path / "apply.log").read_text()[-3000:]
    if provider == "fireworks":
        assert_unique_remote(server.base_url, "local", root, jobs)
    else:  # the next pass cancels a batch whose create answer a fault dropped
        again = spawn(root, server.base_url, *APPLY, log=tmp_path / "again.log")
        assert again.wait(120) == 0, (tmp_path / "again.log").read_text()[-3000:]
    assert_converged(
        provider,
        server.base_url,
        "local",
        root,
        capsys,
        jobs=jobs,
        rows=10,
        extra_allowed=jobs // 5,
    )


def status_of(root: Path, server: GatedServer, capsys: pytest.CaptureFixture[str]) -> list[str]:
    capsys.readouterr()
    assert main(["status", "--root", str(root), "--base-url", server.base_url]) == 0
    table = capsys.readouterr().out.split("\nStages:\n")[0]  # a pipeline's stages follow
    return [line for line in table.splitlines() if line.strip()][1:]


def test_a_pruned_job_declared_again_is_created_again(
    tmp_path: Path, gated: Callable[..., GatedServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """Pruning keeps the job's output dataset (`<job id>-out`); declaring the same job again
    used to fail forever (409 on create, then 404 on the job)."""
    server = gated()
    root = tmp_path / "revert"
    write_project(root, rows=5, jobs=2, reuse=False)  # job1 asks what job0 asks
    args = [*APPLY, "--prune", "-y", "--root", str(root), "--base-url", server.base_url]
    assert main(args) == 0
    original = (root / "jobs" / "all.yaml").read_text()
    (root / "jobs" / "all.yaml").write_text(original.rsplit("---\n", 1)[0])  # drop job1
    assert main(args) == 0
    assert len(remote(server.base_url, "local", project_from_root(root))[0]) == 1
    (root / "jobs" / "all.yaml").write_text(original)  # a revert
    assert main(args) == 0
    assert_unique_remote(server.base_url, "local", root, 2)
    assert_results_verified(root, server.base_url, "local", [f"r{i}" for i in range(5)], capsys)
