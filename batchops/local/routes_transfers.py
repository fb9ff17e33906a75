"""Signed-URL transfers: ``PUT`` streams raw bytes to disk (size must match the signed size),
``GET`` streams a file back. The signature is the auth; no Authorization header is needed.
Mounted by ``app``; URLs are minted by ``routes_datasets``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from batchops.local import datasets
from batchops.local.backend import Backend
from batchops.local.httputil import backend_of
from batchops.local.problems import ApiProblem, invalid, not_found
from batchops.local.signing import verify

CHUNK = 1024 * 1024


def _checked(request: Request) -> tuple[Backend, str, str, str]:
    backend = backend_of(request)
    raw_path = request.scope.get("raw_path", b"").split(b"?", 1)[0].decode("latin-1")
    ok, reason = verify(backend.key, request.method, raw_path, dict(request.query_params))
    if not ok:
        raise ApiProblem("PERMISSION_DENIED", reason)
    params = request.path_params
    return backend, params["account"], params["dataset_id"], params["filename"]


async def transfer(request: Request) -> Response:
    if request.method == "PUT":
        return await _put(request)
    return _get(request)


async def _put(request: Request) -> Response:
    backend, account, dataset_id, filename = _checked(request)
    registered = {
        r["filename"]: r["registered_size"] for r in datasets.files(backend, account, dataset_id)
    }
    size = int(request.query_params["size"])
    if registered.get(filename) != size:
        raise invalid(f"{filename} is not registered for upload with {size} bytes")
    target = backend.file_path(account, dataset_id, filename)
    got = await _receive(request, target, size)
    datasets.record_upload(backend, account, dataset_id, filename, got, registered=size)
    return Response(status_code=200)


async def _receive(request: Request, target: Path, size: int) -> int:
    """Stream the body to a temp file beside ``target``; rename it into place if it has ``size``
    bytes (a short or long body leaves the old file, if any, untouched)."""
    temp = target.with_name(f".put-{os.getpid()}-{id(request)}")
    temp.parent.mkdir(parents=True, exist_ok=True)
    got = 0
    try:
        with temp.open("wb") as sink:
            async for chunk in request.stream():
                got += len(chunk)
                sink.write(chunk)  # page-cache writes: cheaper inline than a thread hop
        if got != size:
            raise invalid(f"received {got} bytes for {target.name}, expected {size}")
        temp.replace(target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return got


def _get(request: Request) -> Response:
    backend, account, dataset_id, filename = _checked(request)
    path = backend.file_path(account, dataset_id, filename)
    if not path.is_file():
        raise not_found(f"object dataset/{dataset_id}/{filename}")
    return _FileStream(path)


class _FileStream(Response):
    """A stored file, streamed. The file is opened and closed inside this call, never by a
    generator left for the garbage collector: however the response ends (sent, the client gone,
    the task cancelled at shutdown) the handle is closed exactly once and never read after."""

    media_type = "application/octet-stream"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.status_code = 200
        self.background = None
        self.init_headers({"Content-Length": str(path.stat().st_size)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        with self.path.open("rb") as handle:
            # Page-cache reads inline (as PUT writes); a gone client makes send() a no-op.
            while chunk := handle.read(CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


ROUTES = [Route("/signed/{account}/{dataset_id}/{filename}", transfer, methods=["GET", "PUT"])]
