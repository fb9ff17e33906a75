"""The project file end to end: identity that ignores the folder name, renames with `moved`, the
CI backend rule, the backend named in the plan, `.batchops/.gitignore`. The CLI runs in this
process against a real local backend on a loopback socket, shared by two checkouts."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from batchops.providers.fireworks.client import FireworksClient
from tests.conftest import ids_in

pytestmark = [pytest.mark.e2e]

WAIT = ("apply", "--wait", "--timeout", "50", "--poll-interval", "0.1")


def project_yaml(name: str, extra: str = "") -> str:
    return f"apiVersion: batchops/v1\nkind: Project\nmetadata: {{name: {name}}}\nspec:\n" + (
        extra or "  paths: [jobs]\n"
    )


def write_repo(
    root: Path,
    *,
    job: str = "answers",
    dataset: str = "prompts",
    project: str | None = "shared",
    extra: str = "",
) -> Path:
    data = root / "jobs" / "data" / "prompts.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {"custom_id": f"row-{i}", "body": {"messages": [{"role": "user", "content": f"q{i}"}]}}
        for i in range(5)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "jobs" / "work.yaml").write_text(
        f"apiVersion: batchops/v1\nkind: Dataset\nmetadata: {{name: {dataset}}}\n"
        "spec: {path: data/prompts.jsonl}\n---\n"
        f"apiVersion: batchops/v1\nkind: BatchInferenceJob\nmetadata: {{name: {job}}}\n"
        f"spec: {{model: accounts/fireworks/models/m, inputDataset: {dataset}}}\n"
    )
    if project is not None:
        (root / "batchops.yaml").write_text(project_yaml(project, extra))
    return root


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
        self.capsys.readouterr()
        code = main([args[0], "--root", str(root), *args[1:]])
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """One local backend (as `batchops serve` would be) that every checkout talks to."""
    with EmbeddedServer(BackendConfig(data_dir=tmp_path / "backend")) as srv:
        monkeypatch.setenv("FIREWORKS_BASE_URL", srv.base_url)
        yield srv.base_url


def remote_jobs(url: str) -> list[str]:
    with FireworksClient(base_url=url, account_id="local", api_key=None) as client:
        return sorted(j.name or "" for j in client.list_jobs())


# -- identity ------------------------------------------------------------------------------------


def test_a_checkout_under_another_folder_name_plans_no_changes(
    tmp_path: Path, shared: str, cli: Cli
) -> None:
    first = write_repo(tmp_path / "one" / "evals")
    assert cli(first, *WAIT).returncode == 0
    clone = tmp_path / "two" / "evals-fork"
    shutil.copytree(first / "jobs", clone / "jobs")
    shutil.copy2(first / "batchops.yaml", clone / "batchops.yaml")

    plan = cli(clone, "plan", "--no-download", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes." in plan.stdout
    assert "comes from the folder name" not in plan.stderr
    body = json.loads(cli(clone, "plan", "-o", "json").stdout)
    assert body["project"] == "shared"
    assert body["summary"]["remoteChanges"] == 0


def test_without_a_project_file_the_folder_name_is_used_and_said(
    tmp_path: Path, shared: str, cli: Cli
) -> None:
    root = write_repo(tmp_path / "My Evals", project=None)
    plan = cli(root, "plan")
    assert plan.returncode == 0, plan.stderr
    assert "project name 'my-evals' comes from the folder name" in plan.stderr
    assert "batchops init" in plan.stderr


def test_the_root_is_found_upward_like_git(
    tmp_path: Path,
    shared: str,
    cli: Cli,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = write_repo(tmp_path / "repo", project="pinned")
    monkeypatch.chdir(root / "jobs" / "data")
    assert main(["plan", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["project"] == "pinned"


# -- moved ---------------------------------------------------------------------------------------


def test_a_moved_job_and_dataset_are_adopted_not_rerun(
    tmp_path: Path, shared: str, cli: Cli
) -> None:
    root = write_repo(tmp_path / "repo")
    assert cli(root, *WAIT).returncode == 0
    before = remote_jobs(shared)
    old_id = before[0].rsplit("/", 1)[1]

    write_repo(
        root,
        job="replies",
        dataset="questions",
        extra=(
            "  moved:\n"
            "    - {from: answers, to: replies, kind: BatchInferenceJob}\n"
            "    - {from: prompts, to: questions}\n"
        ),
    )
    plan = cli(root, "plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr  # no remote change
    assert f"→ job replies [{old_id}]: renamed from answers, no re-run" in plan.stdout
    assert "→ dataset questions [prompts-" in plan.stdout
    assert "renamed from prompts, no re-upload" in plan.stdout
    assert "↓ job replies" in plan.stdout  # its results belong at the new name's path

    assert cli(root, *WAIT, "--prune").returncode == 0
    assert remote_jobs(shared) == before  # nothing re-run, nothing pruned
    assert ids_in(root / "results" / "replies.jsonl") == [f"row-{i}" for i in range(5)]
    again = cli(root, "plan", "--detailed-exitcode")
    assert again.returncode == 0 and "No changes. 2 renamed." in again.stdout


def test_describe_delete_and_cancel_follow_moved(tmp_path: Path, shared: str, cli: Cli) -> None:
    root = write_repo(tmp_path / "repo")
    assert cli(root, *WAIT).returncode == 0
    old_id = remote_jobs(shared)[0].rsplit("/", 1)[1]
    write_repo(
        root,
        job="replies",
        extra=("  moved:\n    - {from: answers, to: replies, kind: BatchInferenceJob}\n"),
    )

    new = cli(root, "describe", "replies", "--output", "json")
    assert new.returncode == 0, new.stderr
    assert [s["jobId"] for s in json.loads(new.stdout)["history"]] == [old_id]
    old = cli(root, "describe", "answers", "--output", "json")
    assert old.returncode == 0, old.stderr
    assert json.loads(old.stdout)["name"] == "replies"
    assert json.loads(old.stdout)["declared"] == "jobs/work.yaml:6"
    assert "'answers' was renamed to 'replies'" in old.stderr

    nothing = cli(root, "cancel", "answers", "-y")  # resolved to replies: nothing running
    assert nothing.returncode == 0 and "no job of answers is running" in nothing.stdout
    for name in ("replies", "answers"):
        refused = cli(root, "delete", name, "-y")
        assert refused.returncode == 1
        assert "job 'replies'" in refused.stderr
        assert "is declared by jobs/work.yaml:6" in refused.stderr and "--force" in refused.stderr
    assert "job 'replies' (renamed from answers in batchops.yaml)" in refused.stderr
    assert len(remote_jobs(shared)) == 1  # the adopted job is still there
    forced = cli(root, "delete", "answers", "-y", "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.splitlines()[-1] == "1 job deleted."
    assert remote_jobs(shared) == []


def test_moved_names_are_checked_with_file_and_line(tmp_path: Path, cli: Cli) -> None:
    root = write_repo(tmp_path / "repo", extra="  moved:\n    - {from: answers, to: nowhere}\n")
    out = cli(root, "plan")
    assert out.returncode == 1
    assert "batchops.yaml:6:23: moved: 'nowhere' is not declared by any manifest" in out.stderr
    assert "moved: 'answers' is still declared" in out.stderr


# -- the backend ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env", [{"CI": "true"}, {"GITHUB_ACTIONS": "true", "FIREWORKS_API_KEY": ""}]
)
@pytest.mark.parametrize("command", ["plan", "apply", "status", "watch"])
def test_no_key_under_ci_exits_1_before_any_backend_starts(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], command: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    root = write_repo(tmp_path / "repo")
    out = cli(root, command)
    assert out.returncode == 1
    assert "FIREWORKS_API_KEY is not set (or empty) and this is a CI run" in out.stderr
    assert "--local" in out.stderr
    assert not (root / ".batchops" / "local").exists()


def test_status_on_the_embedded_backend_says_jobs_progress_only_while_a_command_runs(
    tmp_path: Path, shared: str, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_repo(tmp_path / "repo")
    note = (
        "batchops: on the embedded backend, jobs progress only while `apply --wait` or "
        "`watch` runs, or under `batchops serve`"
    )
    served = cli(root, "status")  # FIREWORKS_BASE_URL: the shared `batchops serve`
    assert served.returncode == 0 and note not in served.stderr
    monkeypatch.delenv("FIREWORKS_BASE_URL")
    embedded = cli(root, "status", "--local")
    assert embedded.returncode == 0, embedded.stderr
    assert embedded.stderr.splitlines().count(note) == 1


def test_top_level_help_states_the_ci_rule(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "except in CI (CI or GITHUB_ACTIONS set): there a missing key is an error" in text
    assert "unless --local is passed or batchops.yaml says backend: local" in text


def test_under_ci_the_local_backend_runs_when_asked(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "1")
    by_flag = write_repo(tmp_path / "flag")
    out = cli(by_flag, "plan", "--local")
    assert out.returncode == 0, out.stderr
    assert "Backend: the embedded local backend at .batchops/local" in out.stdout
    assert "Remote (the embedded local backend):" in out.stdout.splitlines()
    assert "asked by --local" in out.stderr
    by_file = write_repo(tmp_path / "file", extra="  backend: local\n")
    out = cli(by_file, "plan", "-o", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["backend"]["kind"] == "embedded"


def test_backend_fireworks_in_the_project_file_needs_the_key(tmp_path: Path, cli: Cli) -> None:
    root = write_repo(tmp_path / "repo", extra="  backend: fireworks\n")
    out = cli(root, "plan")
    assert out.returncode == 1
    assert "batchops.yaml says backend: fireworks, but FIREWORKS_API_KEY is not set" in out.stderr


def test_the_plan_names_the_server_in_text_json_and_summary(
    tmp_path: Path, shared: str, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    root = write_repo(tmp_path / "repo")
    text = cli(root, "plan").stdout
    assert text.splitlines()[0] == f"Backend: `batchops serve` at {shared}"
    assert text.splitlines()[1] == "Remote (`batchops serve`):"
    body = json.loads(cli(root, "plan", "-o", "json").stdout)
    assert body["backend"] == {
        "kind": "serve",
        "url": shared,
        "text": f"`batchops serve` at {shared}",
    }
    assert f"Backend: `batchops serve` at {shared}" in summary.read_text()


def test_a_dead_server_url_hints_that_batchops_serve_may_not_be_running(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchops.providers.fireworks import retry

    monkeypatch.setattr(retry.RetryPolicy, "backoff", lambda self, n: 0.0)  # no waits between
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("FIREWORKS_BASE_URL", dead)
    out = cli(write_repo(tmp_path / "repo"), "status")
    assert out.returncode == 1
    assert f"(is `batchops serve` running at {dead}? FIREWORKS_BASE_URL names it)" in out.stderr


def test_the_plan_names_the_fireworks_account(
    tmp_path: Path, shared: str, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a key, the header says which account at which URL (here the local server stands in
    for Fireworks: it accepts any bearer key when started without one)."""
    monkeypatch.setenv("FIREWORKS_API_KEY", "fw-test-key")
    monkeypatch.setenv("FIREWORKS_ACCOUNT_ID", "local")
    monkeypatch.setenv("CI", "true")
    root = write_repo(tmp_path / "repo")
    out = cli(root, "plan")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"Backend: Fireworks account local at {shared}"
    assert out.stdout.splitlines()[1] == "Remote (the Fireworks account):"
    assert "fw-test-key" not in out.stdout + out.stderr


# -- .batchops/.gitignore ------------------------------------------------------------------------


def test_the_state_folder_ignores_itself_wherever_it_is_made(
    tmp_path: Path, shared: str, cli: Cli
) -> None:
    validated = write_repo(tmp_path / "validated")
    assert cli(validated, "plan").returncode == 0  # the dataset stat cache
    assert (validated / ".batchops" / ".gitignore").read_text().splitlines()[-1] == "*"
    embedded = write_repo(tmp_path / "embedded", extra="  backend: local\n")
    shutil.rmtree(embedded / ".batchops", ignore_errors=True)
    assert cli(embedded, *WAIT).returncode == 0
    assert "*" in (embedded / ".batchops" / ".gitignore").read_text().splitlines()
    listed = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "-uall"],
        cwd=_git(embedded),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ".batchops/local" not in listed.replace("!! .batchops/", "")


def _git(root: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_serve_and_the_watch_lock_make_the_state_folder_ignore_itself(tmp_path: Path) -> None:
    from batchops.cli import build_parser
    from batchops.cli.serve import build_config
    from batchops.watch.lock import ProjectLock

    served = tmp_path / "served" / ".batchops" / "local"
    build_config(build_parser().parse_args(["serve", "--data-dir", str(served)]))
    assert (served.parent / ".gitignore").read_text().splitlines()[-1] == "*"
    with ProjectLock(tmp_path / "watched"):
        assert (tmp_path / "watched" / ".batchops" / ".gitignore").is_file()
