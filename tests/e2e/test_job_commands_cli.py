"""`batchops delete`, `cancel` and `describe` against a real server on loopback: what the server
holds afterwards, and what the commands print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchops.identity import output_dataset_id
from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from batchops.providers.fireworks.wire import GONE_JOB_STATES, BatchInferenceJob, dataset_resource
from tests.e2e.test_apply_cli import WAIT, InProcess, inproc
from tests.e2e.test_targeting_cli import make_geo, remote_jobs, run_on_pty, write_job_file

pytestmark = [pytest.mark.e2e]
__all__ = ["inproc"]


def remote_datasets(server: InProcess) -> list[str]:
    with server.client() as client:
        return sorted((d.name or "").rsplit("/", 1)[-1] for d in client.list_datasets())


def test_delete_removes_every_job_of_a_name_with_its_outputs_and_only_ours(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = make_geo(tmp_path)
    assert inproc(root, *WAIT).returncode == 0
    write_job_file(root, "capitals", tokens=64)
    assert inproc(root, *WAIT).returncode == 0
    capitals = [j for j in remote_jobs(inproc) if j.startswith("capitals-")]
    assert len(capitals) == 2
    declared = inproc(root, "delete", "capitals", "-y")  # the next apply would re-run it
    assert declared.returncode == 1
    assert "job 'capitals' is declared by jobs/capitals.yaml:" in declared.stderr
    assert "pass --force" in declared.stderr
    refused = inproc(root, "delete", "capitals", "--force")  # no terminal, no -y
    assert refused.returncode == 1 and "pass -y" in refused.stderr
    assert remote_jobs(inproc).count(capitals[0]) == 1
    done = inproc(root, "delete", "capitals", "-y", "--force")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "2 jobs deleted."
    assert not [j for j in remote_jobs(inproc) if j.startswith("capitals-")]
    assert [j.split("-")[0] for j in remote_jobs(inproc)] == ["poems", "rivers"]
    assert not set(map(output_dataset_id, capitals)) & set(remote_datasets(inproc))
    assert (root / "results" / "capitals.jsonl").is_file()  # results on disk are kept
    typo = inproc(root, "delete", "rivrs", "-y")
    assert typo.returncode == 1 and "did you mean 'rivers'" in typo.stderr


def test_delete_and_cancel_never_touch_jobs_without_our_mark(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = make_geo(tmp_path)
    assert inproc(root, *WAIT, "--job", "poems").returncode == 0
    dataset = next(d for d in remote_datasets(inproc) if d.startswith("poems-rows"))
    with inproc.client() as client:
        client.create_job(
            "handmade-0123456789",
            BatchInferenceJob(
                display_name="made by hand",
                model="accounts/fireworks/models/m",
                input_dataset_id=dataset_resource("local", dataset),
            ),
        )
    for command in ("delete", "cancel"):
        refused = inproc(root, command, "handmade", "-y")
        assert refused.returncode == 1 and "not ours" in refused.stderr
    assert "handmade-0123456789" in remote_jobs(inproc)


def test_cancel_stops_running_jobs_and_leaves_finished_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_geo(tmp_path)
    slow = BackendConfig(data_dir=tmp_path / "slow", row_delay=5.0)
    with EmbeddedServer(slow) as srv:
        monkeypatch.setenv("FIREWORKS_BASE_URL", srv.base_url)
        run = InProcess(srv.base_url, capsys)
        assert run(root, "apply", "--job", "poems").returncode == 0
        (job,) = remote_jobs(run)
        cancelled = run(root, "cancel", "poems", "-y", "-o", "json")
        assert cancelled.returncode == 0, cancelled.stderr
        body = json.loads(cancelled.stdout)
        assert [j["remoteId"] for j in body["jobs"]] == [job]
        assert body["jobs"][0]["outputDataset"] is None  # cancel keeps outputs
        with run.client() as client:  # a running job is deleted asynchronously
            assert {j.state for j in client.list_jobs()} <= GONE_JOB_STATES


def test_cancel_with_nothing_running_changes_nothing(tmp_path: Path, inproc: InProcess) -> None:
    root = make_geo(tmp_path)
    assert inproc(root, *WAIT, "--job", "rivers").returncode == 0
    before = remote_jobs(inproc)
    result = inproc(root, "cancel", "rivers", "-y")
    assert result.returncode == 0 and "Nothing to cancel" in result.stdout
    assert remote_jobs(inproc) == before


def test_delete_on_a_terminal_asks_first(tmp_path: Path, inproc: InProcess) -> None:
    root = make_geo(tmp_path)
    assert inproc(root, *WAIT, "--job", "rivers").returncode == 0
    code, output = run_on_pty(root, inproc.url, ["delete", "rivers", "--force"], "yes")
    assert code == 0 and "Do you want to perform these actions?" in output, output
    assert remote_jobs(inproc) == []


def test_describe_shows_the_whole_history_and_where_the_results_are(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = make_geo(tmp_path)
    assert inproc(root, *WAIT, "--job", "capitals").returncode == 0
    (first,) = remote_jobs(inproc)
    write_job_file(root, "capitals", tokens=64)
    assert inproc(root, *WAIT, "--job", "capitals").returncode == 0
    (second,) = set(remote_jobs(inproc)) - {first}
    text = inproc(root, "describe", "capitals")
    assert text.returncode == 0, text.stderr
    assert "declared in jobs/capitals.yaml" in text.stdout
    assert f"results: results/capitals.jsonl (verified, from {second})" in text.stdout
    listed = text.stdout.split("History (2 jobs on the account, oldest first):")[1]
    assert listed.index(first) < listed.index(second)
    assert f"{first}  (attempt 1, older spec)" in text.stdout
    assert f"{second}  (attempt 1, current spec)" in text.stdout
    body = json.loads(inproc(root, "describe", "capitals", "-o", "json").stdout)
    assert [s["jobId"] for s in body["history"]] == [first, second]
    assert all(
        s["state"] == "JOB_STATE_COMPLETED" and s["succeeded"] == 4 and s["created"]
        for s in body["history"]
    )
    assert body["results"]["state"] == "verified" and body["currentJobId"] == second
    (root / "jobs" / "capitals.yaml").unlink()
    undeclared = inproc(root, "describe", "capitals")
    assert "declared by no manifest" in undeclared.stdout and second in undeclared.stdout
    unknown = inproc(root, "describe", "capitol")
    assert unknown.returncode == 1 and "did you mean 'capitals'" in unknown.stderr


def test_delete_and_cancel_of_a_matrix_name_act_on_every_combination(
    tmp_path: Path, inproc: InProcess
) -> None:
    """A matrix's declared name stands for all its jobs, as with `--job NAME`; once it is no
    longer declared, the error names the jobs that look like its combinations."""
    root = make_geo(tmp_path)
    job_file = root / "jobs" / "capitals.yaml"
    job_file.write_text(
        job_file.read_text().replace("models/m,", "models/m, matrix: {temperature: [0, 0.5]},")
    )
    assert inproc(root, *WAIT, "--job", "capitals").returncode == 0
    members = [j for j in remote_jobs(inproc) if j.startswith("capitals-")]
    assert [m.rsplit("-", 1)[0] for m in members] == ["capitals-t0", "capitals-t0p5"]
    nothing = inproc(root, "cancel", "capitals", "-y")
    assert nothing.returncode == 0, nothing.stderr
    assert "Nothing to cancel: no job of capitals is running." in nothing.stdout
    declared = inproc(root, "delete", "capitals", "-y")
    assert declared.returncode == 1
    assert "matrix 'capitals' (2 jobs) is declared by jobs/capitals.yaml:" in declared.stderr
    done = inproc(root, "delete", "capitals", "-y", "--force", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert sorted(j["remoteId"] for j in json.loads(done.stdout)["jobs"]) == members
    assert not [j for j in remote_jobs(inproc) if j.startswith("capitals-")]
    # No longer declared: the hint lists the jobs named like its combinations.
    assert inproc(root, *WAIT, "--job", "capitals").returncode == 0
    job_file.unlink()
    gone = inproc(root, "delete", "capitals", "-y")
    assert gone.returncode == 1
    assert "no job of this project named 'capitals'" in gone.stderr
    assert "capitals-t0, capitals-t0p5" in gone.stderr, gone.stderr
