"""`batchops plan/apply/status` as subprocesses against a real `batchops serve` on loopback.

Assertions are on the world: what the server holds (listed with the client) and what is on disk.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from batchops.providers.fireworks.client import FireworksClient
from tests.conftest import ids_in

pytestmark = [pytest.mark.e2e]

ROWS = 12
WAIT = ("apply", "--wait", "--timeout", "50", "--poll-interval", "0.2")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]

    def client(self) -> FireworksClient:
        return FireworksClient(base_url=self.url, account_id="local", api_key=None)


def start_server(data_dir: Path, *extra: str) -> Server:
    args = [sys.executable, "-m", "batchops", "serve", "--port", "0", "--data-dir", str(data_dir)]
    proc = subprocess.Popen([*args, *extra], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        proc.kill()
        raise AssertionError(f"serve did not start: {line!r}")
    return Server(match.group(1), proc)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    if server.process.stdout:
        server.process.stdout.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "backend")
    yield srv
    stop_server(srv)


@dataclass
class InProcess:
    """The same CLI entry point, called in this process (no interpreter start-up per command)
    against a real server on a loopback socket."""

    url: str
    capsys: pytest.CaptureFixture[str]

    def client(self) -> FireworksClient:
        return FireworksClient(base_url=self.url, account_id="local", api_key=None)

    def __call__(self, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
        self.capsys.readouterr()
        code = main([args[0], "--root", str(root), *args[1:]])
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)


@pytest.fixture
def inproc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[InProcess]:
    with EmbeddedServer(BackendConfig(data_dir=tmp_path / "backend")) as srv:
        monkeypatch.setenv("FIREWORKS_BASE_URL", srv.base_url)
        yield InProcess(srv.base_url, capsys)


def write_rows(path: Path, count: int, *, fail: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        text = f"question {i}" + (" __fail__" if i in fail else "")
        body = {"messages": [{"role": "user", "content": text}]}
        lines.append(json.dumps({"custom_id": f"row-{i}", "body": body}))
    path.write_text("\n".join(lines) + "\n")


def write_manifests(root: Path, *, jobs: dict[str, dict[str, object]] | None = None) -> None:
    jobs = jobs if jobs is not None else {"answers": {}}
    docs = [
        "apiVersion: batchops/v1\nkind: Dataset\nmetadata: {name: prompts}\n"
        "spec: {path: data/prompts.jsonl}\n"
    ]
    for name, extra in jobs.items():
        spec = {
            "model": "accounts/fireworks/models/m",
            "inputDataset": "prompts",
            "inferenceParameters": {"maxTokens": 32},
            **extra,
        }
        docs.append(
            "apiVersion: batchops/v1\nkind: BatchInferenceJob\n"
            f"metadata: {{name: {name}}}\nspec: {json.dumps(spec)}\n"
        )
    (root / "jobs").mkdir(parents=True, exist_ok=True)
    (root / "jobs" / "work.yaml").write_text("---\n".join(docs))


def make_repo(
    tmp_path: Path,
    *,
    rows: int = ROWS,
    fail: set[int] = frozenset(),  # type: ignore[assignment]
    jobs: dict[str, dict[str, object]] | None = None,
) -> Path:
    root = tmp_path / "repo"
    write_rows(root / "jobs" / "data" / "prompts.jsonl", rows, fail=fail)
    write_manifests(root, jobs=jobs)
    return root


def batchops(
    root: Path, server: Server, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "FIREWORKS_BASE_URL": server.url, **(env or {})}
    full_env.pop("FIREWORKS_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "batchops", *args],
        cwd=root,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_no_duplicates(server: Server | InProcess) -> tuple[list[str], list[str]]:
    with server.client() as client:
        jobs = [j.name or "" for j in client.list_jobs()]
        datasets = [d.name or "" for d in client.list_datasets()]
    assert not [n for n, c in Counter(jobs).items() if c > 1]
    return jobs, datasets


def test_apply_wait_converges_then_reports_no_changes(tmp_path: Path, server: Server) -> None:
    root = make_repo(tmp_path, fail={3}, jobs={"answers": {"maxFailedRows": 1}})
    first = batchops(root, server, *WAIT)
    assert first.returncode == 0, first.stderr
    assert "+ dataset prompts" in first.stdout and "+ job answers" in first.stdout
    assert first.stdout.splitlines()[-1] == (
        "Apply complete with failed rows: answers 1 of 12 rows failed "
        "(first: row-3: echo: failure requested) (3 job(s) submitted)."  # 2 row retries of row-3
    )
    results = root / "results" / "answers.jsonl"
    ok, errors = ids_in(results), ids_in(root / "results" / "answers.errors.jsonl")
    assert sorted(ok + errors) == sorted(f"row-{i}" for i in range(ROWS))
    assert errors == ["row-3"]
    jobs, _ = assert_no_duplicates(server)
    # row-3 fails with INTERNAL (a passing reason): sent again alone, rowRetries (2) times
    base = min(jobs)
    assert base.endswith(tuple("0123456789abcdef"))
    assert sorted(jobs) == [base, f"{base}-t1", f"{base}-t2"]
    second = batchops(root, server, "apply", "--wait")
    assert second.returncode == 0 and second.stdout.splitlines()[0] == "No changes."
    assert "warning: answers: 1 of 12 rows failed (maxFailedRows allows 1)" in second.stderr
    assert sorted(p.name for p in results.parent.iterdir()) == [
        "answers.errors.jsonl",
        "answers.jsonl",
    ]


def test_plan_detailed_exitcode_counts_only_remote_changes(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = make_repo(tmp_path)
    pending = inproc(root, "plan", "--detailed-exitcode")
    assert pending.returncode == 2, pending.stderr
    assert inproc(root, *WAIT).returncode == 0
    (root / "results" / "answers.jsonl").write_text('{"custom_id": "edited"}\n')
    local_only = inproc(root, "plan", "--detailed-exitcode", "--output", "json")
    assert local_only.returncode == 0, local_only.stderr
    body = json.loads(local_only.stdout)
    assert body["formatVersion"] == 1
    assert [(a["kind"], a["group"]) for a in body["actions"]] == [("download", "local")]
    assert inproc(root, "apply").returncode == 0
    assert len(ids_in(root / "results" / "answers.jsonl")) == ROWS


def test_saved_plan_applies_once_and_is_refused_when_stale(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = make_repo(tmp_path)
    plan, stale_plan = str(tmp_path / "plan.json"), str(tmp_path / "stale.json")
    assert inproc(root, "plan", "--out", plan).returncode == 0
    assert inproc(root, "plan", "--out", stale_plan).returncode == 0
    applied = inproc(root, "apply", plan)
    assert applied.returncode == 0, applied.stderr
    assert "Applied: 1 job(s) submitted" in applied.stdout.splitlines()[-1]
    stale = inproc(root, "apply", stale_plan)
    assert stale.returncode == 1 and "stale" in stale.stderr
    jobs, _ = assert_no_duplicates(inproc)
    assert len(jobs) == 1


def test_invalid_input_sends_nothing(tmp_path: Path, inproc: InProcess) -> None:
    root = make_repo(tmp_path)
    with (root / "jobs" / "data" / "prompts.jsonl").open("a") as fh:
        fh.write("{not json\n")
    result = inproc(root, "apply")
    assert result.returncode == 1
    assert "prompts.jsonl:" in result.stderr
    with inproc.client() as client:
        assert client.list_datasets() == [] and client.list_jobs() == []


def test_spec_change_replaces_and_prune_removes_the_old_job(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = make_repo(tmp_path)
    assert inproc(root, *WAIT).returncode == 0
    write_manifests(root, jobs={"answers": {"inferenceParameters": {"maxTokens": 64}}})
    plan = inproc(root, "plan")
    assert "~ job answers" in plan.stdout
    assert "inferenceParameters.maxTokens 32 -> 64" in plan.stdout
    old_jobs, old_datasets = assert_no_duplicates(inproc)
    done = inproc(root, *WAIT, "--prune", "--auto-approve")
    assert done.returncode == 0, done.stderr
    assert "its output dataset" in done.stdout  # the plan says the old results go too
    jobs, datasets = assert_no_duplicates(inproc)
    assert len(jobs) == 1
    (old_job,) = old_jobs
    old_output = old_job.rsplit("/", 1)[-1] + "-out"
    assert any(d.endswith("/" + old_output) for d in old_datasets)
    assert not any(d.endswith("/" + old_output) for d in datasets)
    assert any(d.endswith("/" + jobs[0].rsplit("/", 1)[-1] + "-out") for d in datasets)
    status = json.loads(inproc(root, "status", "--output", "json").stdout)
    (row,) = status["jobs"]
    assert row["remoteId"] == jobs[0].rsplit("/", 1)[-1] and row["resultsState"] == "verified"
    assert row["results"] == "results/answers.jsonl"


def test_expired_jobs_resume_and_merge_the_lineage(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "backend", "--row-delay", "0.15", "--max-job-duration", "0.6")
    try:
        # stopper asks what answers asks: without reuse: false, answers' rows would fill its gaps
        stopper = {"onExpired": "stop", "reuse": False}
        root = make_repo(tmp_path, jobs={"answers": {"maxResumes": 20}, "stopper": stopper})
        result = batchops(root, srv, *WAIT, timeout=58)
        assert result.returncode == 3, result.stdout + result.stderr
        assert "↻ job answers" in result.stdout
        merged = ids_in(root / "results" / "answers.jsonl")
        assert sorted(merged) == sorted(f"row-{i}" for i in range(ROWS))
        partial = ids_in(root / "results" / "stopper.jsonl")  # downloaded, even if empty
        assert len(partial) < ROWS and len(set(partial)) == len(partial)
        assert "stopper" in result.stderr  # reported as failed
        jobs, _ = assert_no_duplicates(srv)
        assert any(j.endswith("-r1") for j in jobs)
    finally:
        stop_server(srv)


def test_step_summary_gets_markdown(
    tmp_path: Path, inproc: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(tmp_path)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert inproc(root, "apply").returncode == 0
    text = summary.read_text()
    assert "| + | remote | dataset `prompts`" in text and "batchops apply" in text


def test_wait_timeout_exits_1_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_repo(tmp_path)
    slow = BackendConfig(data_dir=tmp_path / "slow", row_delay=5.0)
    with EmbeddedServer(slow) as srv:
        monkeypatch.setenv("FIREWORKS_BASE_URL", srv.base_url)
        run = InProcess(srv.base_url, capsys)
        result = run(root, "apply", "--wait", "--timeout", "0.5", "--poll-interval", "0.1")
    assert result.returncode == 1
    assert "--timeout 0.5 s reached before convergence" in result.stderr
