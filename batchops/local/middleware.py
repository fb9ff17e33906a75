"""Raw ASGI middleware of the local backend: bearer-token auth, a browser guard, fault injection.

Faults apply to /v1 routes (and to signed-URL transfers when ``on_transfers``): 429 with
Retry-After, 500, 503, a dropped connection (the socket closed without any response), and added
latency, each drawn from one seeded RNG. Installed by ``app.create_app``; ``BrowserGuard`` is
wrapped around the app by ``server`` when it listens on a loopback address.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import random
import threading
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from batchops.local.config import FaultConfig
from batchops.local.openai_errors import auth_failure, from_problem, is_openai_path
from batchops.local.problems import ApiProblem, auth_failure_response, problem_response


class AuthMiddleware:
    """``Authorization: Bearer <key>`` on /v1 routes when a key is configured."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self._expected is None
            or scope["type"] != "http"
            or not scope["path"].startswith("/v1/")
        ):
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            return await self.app(scope, receive, send)
        if is_openai_path(scope["path"]):  # OpenAI's 401 invalid_api_key
            return await auth_failure()(scope, receive, send)
        return await auth_failure_response()(scope, receive, send)


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``[::1]``, ``localhost``: names only this machine can reach."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() in ("localhost", "localhost.localdomain")


def _host_name(host: bytes) -> str:
    """The name part of a Host header: ``[::1]:8808`` -> ``[::1]``, ``a:1`` -> ``a``."""
    text = host.decode("latin-1")
    return text if text.endswith("]") else text.rsplit(":", 1)[0]


class BrowserGuard:
    """Refuse what only a web page would send to a loopback server: an ``Origin`` header (a
    cross-site form POST) or a ``Host`` that is not a loopback name (DNS rebinding). Without
    it, any site the user visits could create jobs or read datasets on a key-less server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        host = _host_name(headers.get(b"host", b"127.0.0.1"))
        if b"origin" not in headers and is_loopback(host):
            return await self.app(scope, receive, send)
        problem = ApiProblem("PERMISSION_DENIED", "browser and non-loopback requests are refused")
        return await problem_response(problem)(scope, receive, send)


class FaultMiddleware:
    def __init__(self, app: ASGIApp, faults: FaultConfig) -> None:
        self.app = app
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._lock = threading.Lock()  # one RNG sequence however requests interleave

    def _applies(self, scope: Scope) -> bool:
        path: str = scope.get("path", "")
        return scope["type"] == "http" and (
            path.startswith("/v1/") or (self.faults.on_transfers and path.startswith("/signed/"))
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.faults.active or not self._applies(scope):
            return await self.app(scope, receive, send)
        with self._lock:
            fault, slow = self._draw()
        if slow:
            await asyncio.sleep(self.faults.latency)
        if fault == "drop":
            return await _drop(scope, receive, send)
        if fault is not None:
            problem = _PROBLEMS[fault](self.faults)
            answer = from_problem if is_openai_path(scope["path"]) else problem_response
            return await answer(problem)(scope, receive, send)
        return await self.app(scope, receive, send)

    def _draw(self) -> tuple[str | None, bool]:
        f = self.faults
        roll = self._rng.random()
        fault = None
        for name, rate in (
            ("429", f.rate_429),
            ("500", f.rate_500),
            ("503", f.rate_503),
            ("drop", f.rate_drop),
        ):
            if roll < rate:
                fault = name
                break
            roll -= rate
        slow = f.latency > 0 and (f.latency_rate == 0 or self._rng.random() < f.latency_rate)
        return fault, slow


def _rate_limited(faults: FaultConfig) -> ApiProblem:
    seconds = faults.retry_after
    headers = {
        "Retry-After": str(max(1, round(seconds))) if seconds >= 1 else f"{seconds:g}",
        "retry-after-ms": str(int(seconds * 1000)),
    }
    return ApiProblem("RESOURCE_EXHAUSTED", "rate limit exceeded (injected)", headers=headers)


_PROBLEMS: dict[str, Any] = {
    "429": _rate_limited,
    "500": lambda _: ApiProblem("INTERNAL", "internal error (injected)"),
    "503": lambda _: ApiProblem("UNAVAILABLE", "service unavailable (injected)"),
}


async def _drop(scope: Scope, receive: Receive, send: Send) -> None:
    """Close the socket with no response at all. uvicorn hides the transport; its receive is a
    bound method of the request cycle, which holds it. Without one, send a truncated response."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()
        await asyncio.sleep(0)  # let connection_lost run, so uvicorn sends nothing more
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
    )
    raise ConnectionAbortedError("injected connection drop")
