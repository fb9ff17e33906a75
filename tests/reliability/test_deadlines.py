"""Nothing hangs (issue 11, section 3): every network read has a deadline, ``--timeout`` bounds
the whole command, a page loop is an error, an answer too big to hold is refused.

A tiny hostile HTTP server on 127.0.0.1 (a raw socket per connection, in threads) trickles bytes
forever: headers, a JSON body, a download; or hands out page tokens that never end. Every test is
bounded by its pytest timeout: on the old code they hang until it fires.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from batchops.cli import main
from batchops.deadline import DeadlineBackend
from batchops.errors import ApiError, DeadlineExceededError
from batchops.local import engines
from batchops.local.config import BackendConfig
from batchops.local.engines import OpenAIEngine
from batchops.providers.fireworks import client as client_module
from batchops.providers.fireworks.client import FireworksClient
from batchops.watch.health import HealthServer, Metrics
from batchops.watch.loop import Outcome, PassRecord
from tests.reliability.conftest import write_project

pytestmark = pytest.mark.timeout(30)
Handler = Callable[[socket.socket, str], None]
TRICKLE = 0.05  # seconds between bytes: each read returns well inside any socket timeout


class Hostile:
    """Answers every request with ``handler(connection, request line)`` until stopped."""

    def __init__(self, handler: Handler) -> None:
        self.handler, self.stop = handler, threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = itertools.count()
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while not self.stop.is_set():
                    head = b""
                    while b"\r\n\r\n" not in head:
                        piece = conn.recv(65536)
                        if not piece:
                            return
                        head += piece
                    next(self.requests)
                    self.handler(conn, head.split(b"\r\n", 1)[0].decode())
            except OSError:
                return

    def trickle(self, conn: socket.socket, data: bytes) -> None:
        for byte in itertools.cycle(data):
            if self.stop.wait(TRICKLE):
                return
            conn.sendall(bytes([byte]))

    def close(self) -> None:
        """Stop accepting before the socket is closed: a thread left blocked in accept() on a
        closed socket could, once its descriptor is reused, take another test's connections."""
        self.stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.acceptor.join(5)
        self.sock.close()


@pytest.fixture
def hostile() -> Iterator[Callable[[Handler], Hostile]]:
    servers: list[Hostile] = []

    def make(handler: Handler) -> Hostile:
        servers.append(Hostile(handler))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def respond(conn: socket.socket, body: bytes, status: str = "200 OK") -> None:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    conn.sendall(head.encode() + b"\r\n\r\n" + body)


def client_for(server: Hostile, **options: object) -> FireworksClient:
    return FireworksClient(base_url=server.url, account_id="a", api_key=None, **options)  # type: ignore[arg-type]


# -- the hostile behaviours --------------------------------------------------------------------


def slow_headers(server: Callable[[], Hostile]) -> Handler:
    def handle(conn: socket.socket, line: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        server().trickle(conn, b"X-Slow: aaaa\r\n")

    return handle


def slow_body(server: Callable[[], Hostile]) -> Handler:
    def handle(conn: socket.socket, line: str) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
        )
        server().trickle(conn, b'{"batchInferenceJobs": [                    ')

    return handle


def slow_download(server: Callable[[], Hostile]) -> Handler:
    def handle(conn: socket.socket, line: str) -> None:
        if ":getDownloadEndpoint" in line:
            urls = {"filenameToSignedUrls": {"BIJOutputSet.jsonl": f"{server().url}/file"}}
            respond(conn, json.dumps(urls).encode())
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        server().trickle(conn, b'{"custom_id": "r1"}\n')

    return handle


class Late:
    """The server a handler belongs to, known once it is made."""

    server: Hostile

    def __call__(self) -> Hostile:
        return self.server


def make_hostile(hostile: Callable[[Handler], Hostile], kind: Callable[[Late], Handler]) -> Hostile:
    late = Late()
    late.server = hostile(kind(late))
    return late.server


# -- one request: its own deadline ---------------------------------------------------------------


@pytest.mark.parametrize("kind", [slow_headers, slow_body], ids=["headers", "body"])
def test_a_trickled_api_answer_ends_at_the_request_timeout(
    hostile: Callable[[Handler], Hostile], kind: Callable[[Late], Handler]
) -> None:
    server = make_hostile(hostile, kind)
    with client_for(server, timeout=1.0, max_retries=0) as client, pytest.raises(ApiError) as e:
        client.list_jobs()
    assert "timed out" in str(e.value) or "deadline" in str(e.value)


def test_a_trickled_download_ends(hostile: Callable[[Handler], Hostile], tmp_path: Path) -> None:
    server = make_hostile(hostile, slow_download)
    with client_for(server, timeout=1.0, max_retries=0) as client, pytest.raises(ApiError):
        client.download_dataset("out", tmp_path)
    assert list(tmp_path.rglob("*.part")) == []


def test_the_command_deadline_ends_a_trickle_and_its_retries(
    hostile: Callable[[Handler], Hostile],
) -> None:
    """The request timeout (60 s) and the retry budget (120 s) would allow minutes: the
    command's deadline, a second away, ends it all with an error that says so."""
    server = make_hostile(hostile, slow_body)
    with client_for(server) as client, pytest.raises(DeadlineExceededError) as e:
        client.deadline = time.monotonic() + 1.0
        client.list_jobs()
    assert "--timeout" in str(e.value)


# -- lists and sizes ---------------------------------------------------------------------------


def test_page_tokens_that_never_end_are_an_error(
    hostile: Callable[[Handler], Hostile], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_PAGES", 20)
    tokens = itertools.count()

    def endless(conn: socket.socket, line: str) -> None:
        page = {"batchInferenceJobs": [], "nextPageToken": f"t{next(tokens)}"}
        respond(conn, json.dumps(page).encode())

    server = hostile(endless)
    with client_for(server) as client, pytest.raises(ApiError, match="more than 20 pages"):
        client.list_jobs()
    assert next(server.requests) == 20


def test_an_answer_too_big_to_hold_is_refused(
    hostile: Callable[[Handler], Hostile], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_RESPONSE_BYTES", 2**20)

    def flood(conn: socket.socket, line: str) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"[" * 65536
        while True:
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    server = hostile(flood)
    with client_for(server, max_retries=0) as client, pytest.raises(ApiError, match="larger"):
        client.list_jobs()


def test_deeply_nested_api_answers_are_an_error_not_a_crash(
    hostile: Callable[[Handler], Hostile],
) -> None:
    server = hostile(lambda conn, line: respond(conn, b'{"x": ' + b"[" * 100_000 + b"}"))
    with client_for(server) as client, pytest.raises(ApiError, match="malformed"):
        client.list_jobs()


# -- the command -------------------------------------------------------------------------------


def test_apply_wait_timeout_bounds_the_whole_command(
    hostile: Callable[[Handler], Hostile],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = make_hostile(hostile, slow_body)
    write_project(tmp_path, rows=2, jobs=1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FIREWORKS_BASE_URL", server.url)
    assert main(["apply", "--wait", "--timeout", "2", "jobs"]) == 1
    assert "--timeout" in capsys.readouterr().err


# -- the daemon says when a pass is stuck ---------------------------------------------------------


def test_readyz_says_when_a_pass_is_stuck() -> None:
    now = [1000.0]
    metrics = Metrics(stuck_after=60.0, clock=lambda: now[0])
    server = HealthServer(metrics, port=0)
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as http:
            metrics.observe_pass(PassRecord(Outcome.OK, 0.1, frozenset({"start"}), 0.0))
            metrics.pass_started()
            now[0] += 30
            assert http.get("/readyz").status_code == 200  # a pass that runs, not yet stuck
            now[0] += 61
            stuck = http.get("/readyz")
            metrics.observe_pass(PassRecord(Outcome.OK, 91.0, frozenset({"resync"}), 0.0))
            assert http.get("/readyz").status_code == 200
    finally:
        server.close()
    assert (stuck.status_code, stuck.text) == (503, "stuck: a pass has run for 91 s\n")


# -- the local backend's upstream cannot hold its shared worker ------------------------------------


def openai_engine(server: Hostile, tmp_path: Path) -> OpenAIEngine:
    config = BackendConfig(data_dir=tmp_path, engine="openai", openai_base_url=server.url)
    return OpenAIEngine(config)


ROW = {"custom_id": "r1", "body": {"messages": [{"role": "user", "content": "hi"}]}}


def test_a_trickling_upstream_fails_the_row_instead_of_holding_the_worker(
    hostile: Callable[[Handler], Hostile], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "ROW_TIMEOUT", 1.0)
    engine = openai_engine(make_hostile(hostile, slow_body), tmp_path)
    try:
        (outcome,) = engine.run("m", {}, [ROW])
    finally:
        engine.close()
    assert outcome.response is None and outcome.error is not None
    assert "request failed" in outcome.error["message"]


def test_an_upstream_answer_too_big_to_hold_fails_the_row(
    hostile: Callable[[Handler], Hostile], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "MAX_ANSWER_BYTES", 2**20)

    def flood(conn: socket.socket, line: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            conn.sendall(b"10000\r\n" + b"x" * 65536 + b"\r\n")

    engine = openai_engine(hostile(flood), tmp_path)
    try:
        (outcome,) = engine.run("m", {}, [ROW])
    finally:
        engine.close()
    assert outcome.error is not None and "larger than" in outcome.error["message"]


def test_no_call_starts_after_the_command_deadline() -> None:
    """Whatever the transport (here one in the process, which has no sockets to bound)."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"batchInferenceJobs": []})

    client = FireworksClient(
        base_url="http://127.0.0.1:9",
        account_id="a",
        api_key=None,
        transport=httpx.MockTransport(answer),
    )
    with client:
        assert client.list_jobs() == []
        client.deadline = time.monotonic() - 1
        with pytest.raises(DeadlineExceededError):
            client.list_jobs()
    assert len(sent) == 1


def test_proxies_from_the_environment_are_kept_and_bounded_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deadlines must not cost proxy users their proxy (httpx drops HTTPS_PROXY when given a
    transport), and a proxy that trickles is bounded like a server."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    with FireworksClient(base_url="https://api.fireworks.ai", account_id="a", api_key=None) as c:
        mounted = list(c._http._mounts.values())
        backends = [t._pool._network_backend for t in (c._http._transport, *mounted)]  # type: ignore[attr-defined]
    assert mounted and all(isinstance(b, DeadlineBackend) for b in backends)
