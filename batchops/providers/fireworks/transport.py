"""The client's default transport: TLS set up only when an https URL is first asked for.

Used by ``FireworksClient`` when no transport is given. ``httpx.Client()`` builds a verifying SSL
context at once (loading the CA bundle: tens of milliseconds of every command's start-up), even
when every request goes to a plain-http loopback ``batchops serve``. Here plain-http requests go
through a transport that never speaks TLS, and the verifying one is built on the first https
request (the real service, a signed storage URL), with httpx's defaults.
"""

from __future__ import annotations

import threading

import httpx

from batchops import deadline as dl
from batchops.config import proxies_in_env
from batchops.deadline import bound_pool


class LazyTLSTransport(httpx.BaseTransport):
    """Two connection pools, one per scheme, the https one created on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plain: httpx.HTTPTransport | None = None
        self._tls: httpx.HTTPTransport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._for(request.url.scheme).handle_request(request)

    def _for(self, scheme: str) -> httpx.HTTPTransport:
        with self._lock:
            if scheme != "http":  # https, and anything httpx would refuse (it says why)
                self._tls = self._tls or _bounded(httpx.HTTPTransport())
                return self._tls
            # verify=False only skips loading the CA bundle: this pool is used for http:// only,
            # where no TLS happens at all.
            self._plain = self._plain or _bounded(httpx.HTTPTransport(verify=False))
            return self._plain

    def close(self) -> None:
        with self._lock:
            for transport in (self._plain, self._tls):
                if transport is not None:
                    transport.close()
            self._plain = self._tls = None


def _bounded(transport: httpx.HTTPTransport) -> httpx.HTTPTransport:
    """Every read and write of the pool checked against the command's deadline (deadline.py)."""
    bound_pool(transport)
    return transport


def http_client(transport: httpx.BaseTransport | None, timeout: float) -> httpx.Client:
    """The client both providers use: every read under the command's deadline, no redirects,
    TLS set up on first https use; httpx's own transport (which mounts the environment's
    proxies, dropped for a transport given to it) when proxies are configured."""
    default = None if proxies_in_env() else LazyTLSTransport()
    return dl.bounded(
        httpx.Client(
            transport=transport or default,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
        )
    )
