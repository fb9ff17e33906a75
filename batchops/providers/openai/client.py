"""The OpenAI-compatible Files + Batches client (reference: openai-batch-api.md).

Used by ``batchops.providers.openai.runner`` and the benches. One ``httpx.Client`` carries
everything; every call goes through ``call_with_retries`` and one shared ``RateLimiter``, as the
Fireworks client does. Uploads and downloads are streamed (memory stays flat); batches are
observed with list calls (``limit=100``, ``after``), never one GET per batch.

A ``POST /v1/batches`` is never retried after a response-less failure: the server may have
created the batch, and a blind retry is how duplicates are born (reference §1). The next pass
finds it through its metadata instead; a 429/5xx answer (nothing created) is retried.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from batchops import deadline as dl
from batchops.config import Secret
from batchops.errors import ApiError, ConfigError, TransportError
from batchops.providers.fireworks.responses import error_from_exception, error_from_response
from batchops.providers.fireworks.retry import Clock, Sleep
from batchops.providers.fireworks.transfers import (
    DOWNLOAD_HEADERS,
    Progress,
    file_chunks,
    is_loopback,
    write_atomically,
)
from batchops.providers.fireworks.transport import http_client
from batchops.providers.openai.wire import (
    Batch,
    BatchList,
    FileDeleted,
    FileList,
    FileObject,
    decode,
)
from batchops.providers.request_loop import LoopClient, RequestLoop, pages
from batchops.wire_openai import COMPLETION_WINDOW

M = TypeVar("M")
T = TypeVar("T")

LIST_LIMIT = 100  # GET /v1/batches accepts 1-100
FILE_LIST_LIMIT = 10_000  # GET /v1/files accepts 1-10,000
MAX_PAGES = 10_000  # a million batches: more pages than any account holds is a server loop
_HTTP_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)


class UncertainCreateError(ApiError):
    """A create whose request may have reached the server, its answer lost. Not retried within
    the call (status 0: ``is_retryable`` says no), but retryable for the command: the next pass
    finds the batch through its metadata, or creates it, so ``apply --wait`` goes on."""

    retryable = True


class OpenAIBatchClient(LoopClient):
    """A synchronous, thread-safe client for one OpenAI-compatible base URL (``.../v1``)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: Secret | None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        max_retries: int = 6,
        retry_budget: float = 120.0,
        max_rate: float | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        jitter: Callable[[float], float] | None = None,
    ) -> None:
        self.base_url = _checked_base_url(base_url, api_key)
        self._key = api_key
        self._loop = RequestLoop(
            max_retries=max_retries,
            retry_budget=retry_budget,
            max_rate=max_rate,
            sleep=sleep,
            clock=clock,
            jitter=jitter,
        )
        self._counts: collections.Counter[str] = collections.Counter()
        self._writes = [0, 0]  # requests that may change the server: started, ended
        self._lock = threading.Lock()
        # TLS set up on first https use (a plain-http server loads no CA bundle); httpx's own
        # transport when proxies are configured; every pool under the command's deadline.
        self._http = http_client(transport, timeout)

    def __repr__(self) -> str:
        return f"OpenAIBatchClient(base_url={self.base_url!r})"

    @property
    def requests_sent(self) -> dict[str, int]:
        """Requests sent so far, by ``METHOD path-kind`` (e.g. ``GET batches``)."""
        with self._lock:
            return dict(self._counts)

    def write_marks(self) -> tuple[int, int]:
        """(started, ended) counts of the calls that may change the server (every method but
        GET): equal when none is in flight; an observer compares them to know whether a listing
        begun earlier can have missed a write (``sweep``)."""
        with self._lock:
            return self._writes[0], self._writes[1]

    # -- files -----------------------------------------------------------------------------------

    def upload_file(self, path: Path, *, filename: str | None = None) -> FileObject:
        """``POST /files`` (multipart, ``purpose=batch``), streamed from disk 1 MiB at a time."""
        tracker = Progress(None)
        name = filename or path.name

        def body() -> tuple[dict[str, str], Any]:
            return batch_multipart(path, name, tracker)

        response = self._api("POST", "/files", body=body, on_retry=tracker.rewind)
        return _parse(FileObject, response, "POST", "/files")

    def download_file(self, file_id: str, target: Path) -> Path:
        """``GET /files/{id}/content`` streamed into ``target`` (temp file, then rename)."""
        path = f"/files/{_segment(file_id)}/content"
        tracker = Progress(None)

        def attempt() -> Path:
            request = self._request(
                "GET", path, headers={**DOWNLOAD_HEADERS, "Accept": "application/binary"}
            )
            response = self._send(request, path, stream=True)
            try:
                write_atomically(response, target, tracker)
            except _HTTP_ERRORS as exc:
                raise self._translate(exc, "GET", path) from exc
            finally:
                response.close()
            return target

        return self._retried(attempt, "GET", path, on_retry=tracker.rewind)

    def iter_files(self) -> Iterator[FileObject]:
        """Every file, one ``GET /files?limit=10000&after=...`` per page."""

        def fetch(after: str | None) -> FileList:
            params = {"limit": str(FILE_LIST_LIMIT), **({"after": after} if after else {})}
            return _parse(FileList, self._api("GET", "/files", params=params), "GET", "/files")

        for page in pages(fetch, _next_after, path="/files", max_pages=MAX_PAGES, cursor="page"):
            yield from page.data

    def delete_file(self, file_id: str) -> bool:
        path = f"/files/{_segment(file_id)}"
        return _parse(FileDeleted, self._api("DELETE", path), "DELETE", path).deleted

    # -- batches ---------------------------------------------------------------------------------

    def create_batch(
        self, *, input_file_id: str, endpoint: str, metadata: Mapping[str, str]
    ) -> Batch:
        body = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": COMPLETION_WINDOW,
            "metadata": dict(metadata),
        }
        response = self._api("POST", "/batches", json=body, once_sent=True)
        return _parse(Batch, response, "POST", "/batches")

    def get_batch(self, batch_id: str) -> Batch:
        path = f"/batches/{_segment(batch_id)}"
        return _parse(Batch, self._api("GET", path), "GET", path)

    def cancel_batch(self, batch_id: str) -> Batch:
        path = f"/batches/{_segment(batch_id)}/cancel"
        return _parse(Batch, self._api("POST", path), "POST", path)

    def iter_batches(self) -> Iterator[Batch]:
        """Every batch, newest first, one ``GET /batches?limit=100&after=...`` per page."""

        def fetch(after: str | None) -> BatchList:
            params = {"limit": str(LIST_LIMIT), **({"after": after} if after else {})}
            response = self._api("GET", "/batches", params=params)
            return _parse(BatchList, response, "GET", "/batches")

        for page in pages(fetch, _next_after, path="/batches", max_pages=MAX_PAGES, cursor="page"):
            yield from page.data

    def list_batches(self) -> list[Batch]:
        return list(self.iter_batches())

    # -- plumbing --------------------------------------------------------------------------------

    def _api(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        body: Callable[[], tuple[dict[str, str], Any]] | None = None,
        on_retry: Callable[[], None] | None = None,
        once_sent: bool = False,
    ) -> httpx.Response:
        """One API call with retries; ``once_sent``: no retry once a request may have arrived."""

        def attempt() -> httpx.Response:
            headers, content = body() if body is not None else ({}, None)
            request = self._request(
                method, path, params=params, json=json, content=content, headers=headers
            )
            try:
                return self._send(request, path, stream=False)
            except TransportError as error:
                if once_sent and not _never_sent(error):
                    raise UncertainCreateError(str(error), method=method, path=path) from error
                raise

        if method == "GET":
            return self._retried(attempt, method, path, on_retry=on_retry)
        self._count_write(0)
        try:
            return self._retried(attempt, method, path, on_retry=on_retry)
        finally:
            self._count_write(1)

    def _count_write(self, end: int) -> None:
        with self._lock:
            self._writes[end] += 1

    def _retried(
        self,
        attempt: Callable[[], T],
        method: str,
        path: str,
        *,
        on_retry: Callable[[], None] | None = None,
    ) -> T:
        """``attempt`` through the shared request loop, each try within the command's deadline
        (batchops/deadline.py: a hung read ends there too)."""

        def bounded() -> T:
            with dl.within(hard=self._loop.deadline, timeout=None):  # the command's deadline only
                return attempt()

        return self._loop.run(bounded, method, path, on_retry=on_retry)

    def _request(
        self, method: str, path: str, *, headers: Mapping[str, str], **kwargs: Any
    ) -> httpx.Request:
        auth = {"Authorization": f"Bearer {self._key.reveal()}"} if self._key else {}
        url = self.base_url + path
        return self._http.build_request(method, url, headers={**headers, **auth}, **kwargs)

    def _send(self, request: httpx.Request, path: str, *, stream: bool) -> httpx.Response:
        self._record(request.method, path)
        try:
            response = self._http.send(request, stream=stream)
        except _HTTP_ERRORS as exc:
            raise self._translate(exc, request.method, path) from exc
        if response.is_success:
            return response
        try:
            response.read()
        except _HTTP_ERRORS as exc:
            raise self._translate(exc, request.method, path) from exc
        finally:
            response.close()
        secret = self._key.reveal() if self._key else None
        raise error_from_response(
            response, method=request.method, path=path, secret=secret, wall_now=time.time()
        )

    def _translate(self, exc: Exception, method: str, path: str) -> ApiError:
        secret = self._key.reveal() if self._key else None
        return error_from_exception(exc, method=method, path=path, secret=secret)

    def _record(self, method: str, path: str) -> None:
        kind = path.strip("/").split("/")[0]
        with self._lock:
            self._counts[f"{method} {kind}"] += 1


def batch_multipart(
    path: Path, filename: str, progress: Progress
) -> tuple[dict[str, str], Iterator[bytes]]:
    """``multipart/form-data`` with ``purpose=batch`` then the file, streamed, exact length."""
    boundary = secrets.token_hex(16)
    name = "".join("_" if ch in '"\\\r\n' else ch for ch in filename)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + path.stat().st_size + len(tail)),
    }

    def body() -> Iterator[bytes]:
        yield head
        yield from file_chunks(path, progress)
        yield tail

    return headers, body()


def _next_after(page: BatchList | FileList) -> str | None:
    """The ``after`` of the next page: the last ID of this one, while the server has more."""
    if page.has_more is False or not page.data:
        return None
    return page.data[-1].id


def _never_sent(error: TransportError) -> bool:
    """The connection was refused or never opened: the server cannot have acted on it."""
    cause = error.__cause__
    return isinstance(cause, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def _segment(value: str) -> str:
    if not value:
        raise ValueError("an empty ID")
    return quote(value, safe="")


def _checked_base_url(base_url: str, api_key: Secret | None) -> str:
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"invalid base URL {base_url!r}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"the base URL must be http(s)://host/..., not {base_url!r}")
    if url.scheme == "http" and api_key is not None and not is_loopback(url.host):
        raise ConfigError(f"refusing to send the API key over plain http to {url.host}")
    return base_url.rstrip("/")


def _parse(model: type[M], response: httpx.Response, method: str, path: str) -> M:
    try:
        return decode(model, response.content)
    except ValueError as exc:  # never quote the server's bytes: they could echo the key
        raise ApiError(
            "malformed response", method=method, path=path, status=response.status_code
        ) from exc
