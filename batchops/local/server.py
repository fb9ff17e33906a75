"""Running the local backend: ``EmbeddedServer`` (uvicorn on a loopback socket in a background
thread, plus the worker; used by the CLI's embedded mode and by tests) and ``serve`` (blocking, for
``batchops serve``; exits cleanly on SIGINT/SIGTERM).
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType

import uvicorn
from starlette.types import ASGIApp

from batchops.local.app import create_app
from batchops.local.backend import Backend
from batchops.local.config import BackendConfig
from batchops.local.middleware import BrowserGuard, is_loopback
from batchops.local.worker import Worker


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling (we are in a thread, or we install our own)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Drop in-flight connections as a vanished client would: a slow download then ends through
        # the disconnect path (its file closed in its own call) instead of being cancelled when
        # the loop goes away, which uvicorn logs as "Exception in ASGI application". Clients retry.
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await super().shutdown(sockets)


def _uvicorn(config: BackendConfig, backend: Backend, host: str) -> _Uvicorn:
    app: ASGIApp = create_app(config, backend=backend)
    if is_loopback(host):  # a server bound elsewhere was exposed on purpose, under its own names
        app = BrowserGuard(app)
    settings = uvicorn.Config(
        app,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    return _Uvicorn(settings)


def _bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets that say so, and
    # without it every response waits ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()  # an address in use or not ours must not leak the socket
        raise
    sock.setblocking(False)
    return sock


class EmbeddedServer:
    """A real HTTP server on a loopback socket in a background thread, plus the job worker."""

    def __init__(
        self, config: BackendConfig, *, host: str = "127.0.0.1", port: int = 0, worker: bool = True
    ) -> None:
        self.config, self.host, self.port = config, host, port
        self._with_worker = worker
        self.base_url = ""
        self.backend: Backend | None = None
        self.worker: Worker | None = None
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self) -> EmbeddedServer:
        self.backend = Backend(self.config)
        self._sock = _bind(self.host, self.port)
        port = self._sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{host}:{port}"
        self._server = _uvicorn(self.config, self.backend, self.host)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name="batchops-local-http",
            daemon=True,
        )
        self._thread.start()
        self._wait_started()
        if self._with_worker:
            self.worker = Worker(self.backend)
            self.worker.start()
        return self

    def _wait_started(self) -> None:
        deadline = time.monotonic() + 10
        while self._server is not None and not self._server.started:
            if time.monotonic() > deadline or not (self._thread and self._thread.is_alive()):
                raise RuntimeError("the local backend's HTTP server did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop(timeout=1.0)
            self.worker = None
        if self._server is not None:
            # Not force_exit: shutdown() aborts every connection, then uvicorn waits (at most
            # timeout_graceful_shutdown) for the aborted requests' tasks to end on their own.
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(3.0)
        if self._sock is not None:
            self._sock.close()
        if self.backend is not None:
            self.backend.close()
        self._server = self._thread = self._sock = self.backend = None

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(
    config: BackendConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8808,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; ``on_ready`` gets the base URL once the socket is bound."""
    server = EmbeddedServer(config, host=host, port=port)
    stopping = threading.Event()

    def _handle(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, _handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        if on_ready is not None:
            on_ready(server.base_url)
        while not stopping.wait(0.2):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
