"""Deadlines on every network read and write: the client's answer to servers that trickle.

httpx's timeouts are per socket operation: a server that sends one byte every few seconds (a
slow-loris response, headers included, or download) never trips them. ``FireworksClient`` (and
the local backend's ``openai`` engine, towards its upstream) runs each request inside
``within(...)``, which sets this thread's limits; ``DeadlineBackend`` (httpcore's network backend,
wrapped) checks them before every read and write and shortens the socket timeout to what is left,
so no read can outlive them:

* ``hard``: the command's deadline (``apply --timeout``), never extended;
* ``soft``: the request's own, ``timeout`` seconds from its start, extended by the time the bytes
  moved so far may take at ``min_rate`` bytes/s (a big download that keeps moving is not cut; a
  trickle is).

When a limit is reached the read raises httpcore's ``ReadTimeout`` (``WriteTimeout``,
``ConnectTimeout``), which httpx and the client turn into a ``TransportError``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

Clock = time.monotonic


@dataclass
class Limits:
    hard: float | None  # monotonic time
    soft: float | None
    min_rate: float | None  # bytes/s that extend ``soft``; None: a fixed soft deadline

    def remaining(self) -> float | None:
        ends = [t for t in (self.hard, self.soft) if t is not None]
        return None if not ends else min(ends) - Clock()

    def moved(self, count: int) -> None:
        if self.soft is not None and self.min_rate:
            self.soft += count / self.min_rate


_local = threading.local()


def current() -> Limits | None:
    limits: Limits | None = getattr(_local, "limits", None)
    return limits


@contextlib.contextmanager
def within(
    *, hard: float | None, timeout: float | None, min_rate: float | None = None
) -> Iterator[Limits]:
    """Run a request (its body reads included) under these limits, on this thread."""
    soft = None if timeout is None else Clock() + timeout
    previous = current()
    limits = Limits(hard, soft, min_rate)
    _local.limits = limits
    try:
        yield limits
    finally:
        _local.limits = previous


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """The socket timeout for one operation: the smaller of httpx's and what is left."""
    limits = current()
    left = None if limits is None else limits.remaining()
    if left is None:
        return timeout
    if left <= 0:
        raise error("deadline reached")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))
        limits = current()
        if limits is not None:
            limits.moved(len(data))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))
        limits = current()
        if limits is not None:
            limits.moved(len(buffer))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(
            self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def bounded(client: httpx.Client) -> httpx.Client:
    """``client`` with ``DeadlineBackend`` under each of its own connection pools: its transport
    and the proxy transports httpx mounts from the environment (``HTTPS_PROXY``...). httpx offers
    no parameter for the network backend, so each pool's is wrapped in place (httpcore 1.x); a
    transport given by a caller (tests, in-process apps) has no pool and is left alone, and one
    that makes its pools later (``LazyTLSTransport``) calls ``bound_pool`` on each it makes."""
    for transport in (client._transport, *client._mounts.values()):
        bound_pool(transport)
    return client


def bound_pool(transport: object) -> None:
    """Wrap the network backend of ``transport``'s connection pool, if it has one."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if backend is not None and not isinstance(backend, DeadlineBackend):
        pool._network_backend = DeadlineBackend(backend)  # type: ignore[union-attr]
