"""Graceful stops of the local backend: a SIGTERM'd `batchops serve` hands back its job leases (so
a restart resumes at once even with an hour-long lease), and a stop in the middle of a download
ends it quietly (no unhandled exception logged, the file handle closed in its own call).
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from batchops.local.server import EmbeddedServer
from tests.local.conftest import ACCOUNT, jsonl, rows, upload_rows, wait_for_rows, wait_for_state

HOUR = "3600"  # only a released lease lets the restarted server take the job within the test


def start_serve(data: Path, *flags: str) -> tuple[subprocess.Popen[str], httpx.Client]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchops",
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data),
            "--lease-seconds",
            HOUR,
            *flags,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    found = re.search(r"http://\S+", proc.stdout.readline())
    assert found, "serve did not start"
    return proc, httpx.Client(base_url=f"{found.group(0)}/v1/accounts/{ACCOUNT}", timeout=10)


def terminate(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert proc.stdout is not None
    proc.stdout.close()


def lease(data: Path, job_id: str) -> tuple[str | None, int]:
    """(owner, cursor) of the job, straight from the backend's SQLite file."""
    with sqlite3.connect(data / "backend.sqlite3") as db:
        row = db.execute("SELECT owner, cursor FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return row[0], row[1]


def eventually(check: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def finish_after_restart(data: Path, count: int) -> None:
    """A fresh server (echo engine) completes j1, every input row exactly once in the output."""
    proc, client = start_serve(data)
    try:
        job = wait_for_state(client, "j1", timeout=30)
        assert job["state"] == "JOB_STATE_COMPLETED", job
        urls = client.get("/datasets/j1-output:getDownloadEndpoint").json()
        body = httpx.get(urls["filenameToSignedUrls"]["dataset/j1-output/BIJOutputSet.jsonl"])
        assert Counter(r["custom_id"] for r in jsonl(body.content)) == Counter(
            f"r{i}" for i in range(count)
        )
    finally:
        client.close()
        terminate(proc)


def create_job(client: httpx.Client, count: int) -> None:
    upload_rows(client, "in", rows(count))
    created = client.post(
        "/batchInferenceJobs",
        params={"batchInferenceJobId": "j1"},
        json={"model": "m", "inputDatasetId": "in"},
    )
    assert created.status_code == 200, created.text


def test_sigterm_hands_back_the_lease_and_a_restart_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, client = start_serve(data, "--row-delay", "0.01")
    with client:
        create_job(client, 300)
        partway = wait_for_rows(client, "j1", 20)
    assert partway["state"] == "JOB_STATE_RUNNING"
    terminate(proc)
    owner, cursor = lease(data, "j1")
    assert owner is None and 0 < cursor < 300
    finish_after_restart(data, 300)


class _Upstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that answers only while ``flowing`` is set."""

    flowing = threading.Event()
    waiting = threading.Semaphore(0)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.flowing.is_set():
            self.waiting.release()
            self.flowing.wait(60)
        message = {"role": "assistant", "content": body["messages"][-1]["content"]}
        choice = {"index": 0, "finish_reason": "stop", "message": message}
        answer = json.dumps({"choices": [choice]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    _Upstream.flowing.set()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    _Upstream.flowing.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_sigterm_during_a_stuck_engine_call_still_hands_back_the_lease(
    tmp_path: Path, upstream: str
) -> None:
    data = tmp_path / "data"
    proc, client = start_serve(
        data, "--engine", "openai", "--openai-base-url", upstream, "--openai-concurrency", "2"
    )
    with client:
        create_job(client, 2000)
        wait_for_rows(client, "j1", 1)
    _Upstream.flowing.clear()
    assert _Upstream.waiting.acquire(timeout=20), "the engine never reached the upstream"
    before = lease(data, "j1")
    proc.send_signal(signal.SIGTERM)
    # The worker is stuck in the engine call past stop()'s join: the lease must come back anyway.
    assert eventually(lambda: lease(data, "j1")[0] is None)
    _Upstream.flowing.set()  # the stuck batch now returns into a stopped worker...
    assert proc.wait(30) == 0
    assert lease(data, "j1") == (None, before[1])  # ...which commits (and writes) nothing of it
    assert proc.stdout is not None
    proc.stdout.close()
    finish_after_restart(data, 2000)


def test_stop_mid_download_ends_it_quietly(
    make_server: Callable[..., EmbeddedServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(worker=False)
    with httpx.Client(base_url=f"{server.base_url}/v1/accounts/{ACCOUNT}", timeout=10) as client:
        upload_rows(client, "in", rows(100_000))  # ~7 MB: more than the socket buffers hold
        urls = client.get("/datasets/in:getDownloadEndpoint").json()["filenameToSignedUrls"]
    uvicorn_log = logging.getLogger("uvicorn")  # it does not propagate to the root logger
    uvicorn_log.addHandler(caplog.handler)
    try:
        with httpx.stream("GET", next(iter(urls.values())), timeout=10) as response:
            chunks = response.iter_raw(65536)
            next(chunks)  # the server is now blocked writing to us
            server.stop()
            with pytest.raises(httpx.RemoteProtocolError):  # cut off, not left hanging open
                for _ in chunks:
                    pass
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
