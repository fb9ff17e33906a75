"""Targeting from the command line: selectors, scoped prune, consent before deleting, the
orphans line, `apply -o json`, Ctrl-C, and closed pipes. Against a real server on loopback."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest

from batchops.cli.reporters import LineReporter
from batchops.plan import Action, Kind, Resource
from tests.e2e.test_apply_cli import (
    WAIT,
    InProcess,
    Server,
    inproc,
    start_server,
    stop_server,
    write_rows,
)

pytestmark = [pytest.mark.e2e]
__all__ = ["inproc"]  # the fixture, imported for this module's tests

JOB = """apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {{name: {name}, labels: {{team: {team}}}}}
spec: {{model: accounts/fireworks/models/m, inputDataset: {dataset},
        inferenceParameters: {{maxTokens: {tokens}}}}}
"""
DATASET = """apiVersion: batchops/v1
kind: Dataset
metadata: {{name: {name}}}
spec: {{path: data/{name}.jsonl}}
"""


def write_job_file(root: Path, name: str, *, team: str = "geo", tokens: int = 32) -> None:
    """jobs/<name>.yaml: a dataset <name>-rows and the job <name> reading it."""
    dataset = f"{name}-rows"
    write_rows(root / "jobs" / "data" / f"{dataset}.jsonl", 4)
    text = DATASET.format(name=dataset) + "---\n"
    text += JOB.format(name=name, team=team, dataset=dataset, tokens=tokens)
    (root / "jobs" / f"{name}.yaml").write_text(text)


def make_geo(tmp_path: Path) -> Path:
    root = tmp_path / "geo"
    root.mkdir()
    # A pinned project: no notice on stderr about where the name came from.
    (root / "batchops.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: geo}\n", encoding="utf-8"
    )
    write_job_file(root, "capitals")
    write_job_file(root, "rivers")
    write_job_file(root, "poems", team="art")
    return root


def remote_jobs(server: InProcess | Server) -> list[str]:
    with server.client() as client:
        return sorted((j.name or "").rsplit("/", 1)[-1] for j in client.list_jobs())


def test_selectors_plan_only_the_selection_and_count_the_rest(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = make_geo(tmp_path)
    by_name = inproc(root, "plan", "--job", "capitals")
    assert by_name.returncode == 0, by_name.stderr
    assert "job capitals" in by_name.stdout and "dataset capitals-rows" in by_name.stdout
    assert "rivers" not in by_name.stdout and "poems" not in by_name.stdout
    assert "2 jobs and 2 datasets outside the selection not shown." in by_name.stdout
    by_label = inproc(root, "apply", "-l", "team=geo", "--wait", "--poll-interval", "0.2")
    assert by_label.returncode == 0, by_label.stderr
    assert [j.rsplit("-", 1)[0] for j in remote_jobs(inproc)] == ["capitals", "rivers"]
    status = inproc(root, "status", "-l", "team=art")
    assert "poems" in status.stdout and "capitals" not in status.stdout
    assert status.stdout.splitlines()[-1] == "2 jobs outside the selection not shown."
    typo = inproc(root, "plan", "--job", "capitols")
    assert typo.returncode == 1 and "did you mean 'capitals'" in typo.stderr


def test_labels_that_select_nothing_are_an_error_for_plan_apply_and_status(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = make_geo(tmp_path)
    for command in ("plan", "apply", "status"):
        out = inproc(root, command, "-l", "team=typo")
        assert out.returncode == 1, (command, out.stdout)
        assert "no declared job has the labels team=typo" in out.stderr
        assert "labels in use: team=art, team=geo" in out.stderr
    assert remote_jobs(inproc) == []


def test_a_saved_plan_keeps_its_selection(tmp_path: Path, inproc: InProcess) -> None:
    root = make_geo(tmp_path)
    saved = str(tmp_path / "capitals.json")
    assert inproc(root, "plan", "--job", "capitals", "--out", saved).returncode == 0
    mixed = inproc(root, "apply", saved, "--job", "rivers")
    assert mixed.returncode == 1 and "keeps the selection" in mixed.stderr
    applied = inproc(root, "apply", saved)
    assert applied.returncode == 0, applied.stderr
    assert [j.split("-")[0] for j in remote_jobs(inproc)] == ["capitals"]


def test_prune_with_narrowed_paths_never_touches_other_files(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = make_geo(tmp_path)
    assert inproc(root, *WAIT).returncode == 0
    before = remote_jobs(inproc)
    write_job_file(root, "capitals", tokens=64)  # a new spec: the old job is now undeclared
    plan = inproc(root, "plan", "--prune", "-o", "json", str(root / "jobs" / "capitals.yaml"))
    assert plan.returncode == 0, plan.stderr
    prunes = [
        a["resource"]["name"]
        for a in json.loads(plan.stdout)["actions"]
        if a["kind"].startswith("prune")
    ]
    assert prunes == ["capitals"]
    by_job = inproc(root, "plan", "--prune", "--job", "rivers")
    assert "prune" not in by_job.stdout and "No changes." in by_job.stdout
    done = inproc(root, *WAIT, "--prune", "-y", str(root / "jobs" / "capitals.yaml"))
    assert done.returncode == 0, done.stderr
    after = remote_jobs(inproc)
    assert [j for j in before if not j.startswith("capitals")] == [
        j for j in after if not j.startswith("capitals")
    ]
    assert len([j for j in after if j.startswith("capitals")]) == 1


def test_owned_jobs_no_manifest_declares_are_one_line_and_prune_needs_consent_in_ci(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = make_geo(tmp_path)
    assert inproc(root, *WAIT).returncode == 0
    (root / "jobs" / "rivers.yaml").unlink()
    plan = inproc(root, "plan")
    assert (
        "1 owned job is declared by no manifest; `batchops apply --prune` deletes it."
        in plan.stdout.splitlines()
    )
    summary = tmp_path / "summary.md"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GITHUB_STEP_SUMMARY", str(summary))
        refused = inproc(root, "apply", "--prune")
    assert refused.returncode == 1 and "--auto-approve" in refused.stderr
    assert "not applied, exit 1" in summary.read_text()
    assert any(j.startswith("rivers") for j in remote_jobs(inproc))
    saved = str(tmp_path / "prune.json")
    assert inproc(root, "plan", "--prune", "--out", saved).returncode == 0
    applied = inproc(root, "apply", saved)
    assert applied.returncode == 0, applied.stderr
    assert not any(j.startswith("rivers") for j in remote_jobs(inproc))


def run_on_pty(root: Path, url: str, args: list[str], answer: str) -> tuple[int, str]:
    """The CLI with a pseudo-terminal as stdin and stdout; ``answer`` typed at the question."""
    master, slave = pty.openpty()
    env = {**os.environ, "FIREWORKS_BASE_URL": url, "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchops", *args],
        cwd=root,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(slave)
    seen, answered = b"", False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"Only 'yes' will be accepted" in seen:
            os.write(master, answer.encode() + b"\n")
            answered = True
        if proc.poll() is not None and not ready:
            break
    try:
        code = proc.wait(30)
    finally:
        proc.kill()  # a no-op once it exited; never left behind when the question never came
        os.close(master)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    return code, seen.decode(errors="replace") + err


@pytest.mark.parametrize("answer", ["no", "yes"])
def test_apply_on_a_terminal_asks_before_deleting(
    tmp_path: Path, inproc: InProcess, answer: str
) -> None:
    root = make_geo(tmp_path)
    assert inproc(root, *WAIT).returncode == 0
    (root / "jobs" / "rivers.yaml").unlink()
    code, output = run_on_pty(root, inproc.url, ["apply", "--prune"], answer)
    assert "- job rivers" in output and "Do you want to perform these actions?" in output
    gone = not any(j.startswith("rivers") for j in remote_jobs(inproc))
    assert (code, gone) == ((0, True) if answer == "yes" else (1, False)), output


def test_apply_json_is_one_document_of_what_was_applied(tmp_path: Path, server: Server) -> None:
    root = make_geo(tmp_path)
    env = {**os.environ, "FIREWORKS_BASE_URL": server.url}
    done = subprocess.run(
        [sys.executable, "-m", "batchops", *WAIT, "-o", "json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)  # one document: progress went to stderr
    assert "✓" in done.stderr and body["converged"] is True
    applied = {(a["kind"], a["resource"]["name"], a["outcome"]) for a in body["applied"]}
    assert ("create-job", "capitals", "done") in applied
    assert ("download", "rivers", "done") in applied
    assert {j["name"]: j["state"] for j in body["jobs"]} == {
        n: "JOB_STATE_COMPLETED" for n in ("capitals", "poems", "rivers")
    }
    assert len(body["plan"]["actions"]) == 6  # the first pass's plan, not the last, empty one


@pytest.fixture
def server(tmp_path: Path) -> Server:  # type: ignore[misc]
    srv = start_server(tmp_path / "backend")
    yield srv  # type: ignore[misc]
    stop_server(srv)


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_ctrl_c_during_wait_says_the_jobs_keep_running(
    tmp_path: Path, sig: signal.Signals, code: int, word: str
) -> None:
    srv = start_server(tmp_path / "backend", "--row-delay", "5")
    try:
        root = make_geo(tmp_path)
        env = {**os.environ, "FIREWORKS_BASE_URL": srv.url}
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchops", *WAIT, "--job", "poems"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            if "✓ + job poems" in line:  # submitted: now it is waiting
                break
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == code, err
        assert f"{word}: the remote jobs keep running on the account, and are billed: poems" in err
        assert "batchops status" in err and "batchops cancel NAME" in err
        assert "Traceback" not in err
    finally:
        stop_server(srv)


def test_progress_lines_from_parallel_workers_never_share_a_line() -> None:
    writes: list[str] = []

    class Recorder(StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            time.sleep(0)  # let another thread in between two writes, if there are two
            return len(text)

    reporter = LineReporter()
    actions = [
        Action(Kind.CREATE_JOB, Resource("job", f"j{i}", f"j{i}-x"), "new") for i in range(40)
    ]
    with redirect_stdout(Recorder()):
        threads = [
            threading.Thread(target=reporter.action_finished, args=(a, None)) for a in actions
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(writes) == len(actions)
    assert all(w.endswith("\n") and w.count("\n") == 1 for w in writes)


@pytest.mark.parametrize(
    "args",
    [
        ["schema"],
        ["plan", "-o", "json"],
        ["plan"],
        ["status", "-o", "json"],
        ["validate"],
        ["--help"],
    ],
)
def test_a_closed_pipe_ends_every_command_quietly(
    tmp_path: Path, inproc: InProcess, args: list[str]
) -> None:
    root = make_geo(tmp_path)
    env = {**os.environ, "FIREWORKS_BASE_URL": inproc.url}
    reader, writer = os.pipe()
    os.close(reader)  # like `| head -c 0`: the reader is gone before the first write
    proc = subprocess.run(
        [sys.executable, "-m", "batchops", *args],
        cwd=root,
        env=env,
        stdout=writer,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    os.close(writer)
    assert proc.stderr == ""
    assert proc.returncode in (0, 141)


def test_the_closing_line_counts_each_state_once_whatever_its_providers_spelling() -> None:
    from types import SimpleNamespace

    from batchops.cli.apply_output import states_text as _states_text

    mixed = {"JOB_STATE_COMPLETED": 7, "completed": 1, "JOB_STATE_RUNNING": 2, "in_progress": 1}
    result = SimpleNamespace(job_states=mixed)
    assert _states_text(result) == "8 completed, 1 in_progress, 2 running"  # type: ignore[arg-type]
