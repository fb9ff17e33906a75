"""`batchops watch` as a subprocess against a shared local backend on a loopback socket.

The daemon is pointed at the backend with FIREWORKS_BASE_URL; the test reads what the backend
holds through a FireworksClient, edits files as a user would, and signals the process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from batchops.providers.fireworks.client import FireworksClient

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DATASET = """\
apiVersion: batchops/v1
kind: Dataset
metadata:
  name: prompts
spec:
  path: ../data/prompts.jsonl
"""

JOB = """\
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata:
  name: {name}
spec:
  model: accounts/fireworks/models/llama-v3p1-8b-instruct
  inputDataset: prompts
  inferenceParameters:
    maxTokens: {max_tokens}
"""

ROWS = "".join(
    json.dumps({"custom_id": f"r{i}", "body": {"messages": [{"role": "user", "content": f"q{i}"}]}})
    + "\n"
    for i in range(3)
)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[FireworksClient]:
    from batchops.local.config import BackendConfig
    from batchops.local.server import EmbeddedServer

    with (
        EmbeddedServer(BackendConfig(data_dir=tmp_path / "server"), port=0) as server,
        FireworksClient(base_url=server.base_url, account_id="local", api_key=None) as client,
    ):
        yield client


def make_project(root: Path, *, jobs: dict[str, int]) -> None:
    (root / "jobs").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "prompts.jsonl").write_text(ROWS)
    (root / "jobs" / "prompts.yaml").write_text(DATASET)
    for name, max_tokens in jobs.items():
        write_job(root, name, max_tokens)


def write_job(root: Path, name: str, max_tokens: int) -> None:
    (root / "jobs" / f"{name}.yaml").write_text(JOB.format(name=name, max_tokens=max_tokens))


class Daemon:
    def __init__(self, root: Path, base_url: str, *extra: str) -> None:
        self.log = root.parent / f"{root.name}-watch-{time.monotonic_ns()}.log"
        env = {**os.environ, "FIREWORKS_BASE_URL": base_url, "NO_COLOR": "1"}
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "batchops",
                    "watch",
                    "--interval",
                    "1s",
                    "--log-format",
                    "json",
                    *extra,
                ],
                cwd=root,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def lines(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a notice that is not JSON
        return out

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)


def eventually(check: Callable[[], object], timeout: float = 30.0) -> object:
    """Polls the world until ``check`` holds: processes take their time; assertions do not."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def job_names(client: FireworksClient) -> set[str]:
    return {j.display_name or "" for j in client.list_jobs()}


def has_job(client: FireworksClient, name: str) -> Callable[[], bool]:
    return lambda: any(name in n for n in job_names(client))


def test_watch_creates_jobs_as_manifests_appear_and_stops_on_sigterm(
    tmp_path: Path, backend: FireworksClient
) -> None:
    root = tmp_path / "proj"
    make_project(root, jobs={"alpha": 32})
    daemon = Daemon(root, backend.base_url)
    try:
        assert eventually(has_job(backend, "alpha"))
        write_job(root, "beta", 16)  # a new manifest, saved while the daemon runs
        assert eventually(has_job(backend, "beta"))
        assert eventually(lambda: (root / "results" / "alpha.jsonl").exists())
        daemon.proc.send_signal(signal.SIGHUP)  # "run a pass now"
        assert eventually(
            lambda: any(
                "sighup" in str(line.get("reasons"))
                for line in daemon.lines()
                if line.get("event") == "pass"
            )
        )
        second = subprocess.run(
            [sys.executable, "-m", "batchops", "watch"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "FIREWORKS_BASE_URL": backend.base_url},
        )
        assert second.returncode == 1
        assert f"PID {daemon.proc.pid}" in second.stderr
    finally:
        code = daemon.terminate()
    assert code == 0
    events = [line.get("event") for line in daemon.lines()]
    assert "pass" in events and "action" in events and "stopped" in events


def test_a_broken_manifest_is_reported_and_the_fix_is_picked_up(
    tmp_path: Path, backend: FireworksClient
) -> None:
    root = tmp_path / "proj"
    make_project(root, jobs={})
    (root / "jobs" / "gamma.yaml").write_text(
        JOB.format(name="gamma", max_tokens=8).replace("model:", "modle:")
    )
    daemon = Daemon(root, backend.base_url, "--health-port", "0")
    try:
        assert eventually(lambda: any(line.get("event") == "diagnostic" for line in daemon.lines()))
        diagnostic = next(
            str(line["message"]) for line in daemon.lines() if line.get("event") == "diagnostic"
        )
        assert "jobs/gamma.yaml:" in diagnostic
        assert daemon.proc.poll() is None  # still running
        assert not has_job(backend, "gamma")()
        write_job(root, "gamma", 8)  # the fix
        assert eventually(has_job(backend, "gamma"))
        port = next(
            int(str(line["port"])) for line in daemon.lines() if line.get("event") == "health"
        )
        assert eventually(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        assert daemon.terminate() == 0
    assert 'batchops_passes_total{outcome="invalid"} 1.0' in metrics
    assert 'batchops_api_requests_total{code="200"' in metrics


def git(*args: str, cwd: Path) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def test_git_source_applies_what_is_pushed(tmp_path: Path, backend: FireworksClient) -> None:
    bare, work = tmp_path / "origin.git", tmp_path / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    git("clone", "--quiet", str(bare), str(work), cwd=tmp_path)
    git("checkout", "--quiet", "-b", "main", cwd=work)
    make_project(work, jobs={})
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", "dataset", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    daemon_root = tmp_path / "daemon"
    daemon_root.mkdir()
    daemon = Daemon(
        daemon_root,
        backend.base_url,
        "--git-url",
        bare.as_uri(),
        "--git-ref",
        "main",
        "--git-interval",
        "300ms",
    )
    try:
        assert eventually(lambda: (daemon_root / ".batchops" / "git" / "jobs").is_dir())
        write_job(work, "delta", 4)
        git("add", "-A", cwd=work)
        git("commit", "--quiet", "-m", "a job", cwd=work)
        git("push", "--quiet", "origin", "main", cwd=work)
        assert eventually(has_job(backend, "delta"))
    finally:
        assert daemon.terminate() == 0


def test_sigterm_while_a_call_hangs_still_exits_0_within_10_seconds(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    make_project(root, jobs={"eps": 4})
    with socket.socket() as hole:  # accepts connections, never answers: a hung API
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        daemon = Daemon(root, f"http://127.0.0.1:{hole.getsockname()[1]}", "--health-port", "0")
        assert eventually(lambda: any(line.get("event") == "health" for line in daemon.lines()))
        time.sleep(0.5)  # into the first pass, which waits on the silent socket
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=10) == 0
    assert "abandoned" in [line.get("event") for line in daemon.lines()]
