"""`batchops serve` restarted under a running `batchops watch`, with the jobs on each provider
kind: the daemon logs the API errors, backs off, rides through a SIGTERM and a SIGKILL of the
backend (same port, same data dir), and converges: every job completed once (on the
OpenAI-compatible provider, a duplicate batch at most, cancelled), results verified on disk, and
the daemon still alive.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchops.identity import project_from_root
from tests.reliability.conftest import (
    assert_converged,
    openai_url,
    remote,
    spawn,
    write_project,
)
from tests.reliability.openai_world import PROVIDERS, batches

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOBS, ROWS = 3, 150
LEASE = {signal.SIGTERM: "3600", signal.SIGKILL: "2"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(port: int, data: Path, lease: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchops",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--row-delay",
            "0.01",
            "--lease-seconds",
            lease,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert re.search(r"http://\S+", proc.stdout.readline()), "serve did not start"
    return proc


def stop(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    proc.send_signal(sig)
    proc.wait(15)
    if proc.stdout:
        proc.stdout.close()


def eventually(check: Callable[[], object], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def events(log: Path) -> list[dict[str, object]]:
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def running(url: str, root: Path, provider: str) -> bool:
    try:
        if provider == "openai":
            return any(b["status"] == "in_progress" for b in batches(f"{url}/v1"))
        jobs, _ = remote(url, "local", project_from_root(root))
    except Exception:
        return False
    return any(j.state == "JOB_STATE_RUNNING" for j in jobs)


def failed_passes(log: Path) -> int:
    return sum(1 for e in events(log) if e.get("event") == "pass" and e["outcome"] == "api_error")


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_watch_rides_through_a_restart_of_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sig: signal.Signals, provider: str
) -> None:
    port, data = free_port(), tmp_path / "backend"
    url = f"http://127.0.0.1:{port}"
    root = tmp_path / "proj"
    write_project(root, rows=ROWS, jobs=JOBS, openai_url=openai_url(url, provider))
    # SIGTERM hands the leases back, so an hour-long lease must not delay the restart; a killed
    # server's lease has to lapse, so keep that one short (batches renew it every 0.2 s).
    lease = LEASE[sig]
    serve = start_serve(port, data, lease)
    log = tmp_path / "watch.log"
    daemon = spawn(root, url, "watch", "--interval", "1s", "--log-format", "json", log=log)
    try:
        assert eventually(lambda: running(url, root, provider)), log.read_text()[-2000:]
        stop(serve, sig)
        assert eventually(lambda: failed_passes(log) >= 1), log.read_text()[-2000:]
        serve = start_serve(port, data, lease)
        done = lambda: all((root / "results" / f"job{k}.jsonl").exists() for k in range(JOBS))  # noqa: E731
        assert eventually(done, 60), log.read_text()[-2000:]
        assert daemon.poll() is None
        assert any(e.get("event") == "backoff" for e in events(log))
        assert_converged(
            provider, url, "local", root, capsys, jobs=JOBS, rows=ROWS, extra_allowed=1
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(20)
        stop(serve, signal.SIGTERM)
    assert code == 0
