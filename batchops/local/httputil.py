"""Request/response helpers shared by the route modules of the local backend."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from batchops.local.backend import Backend
from batchops.local.problems import invalid


class WireJSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def backend_of(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


MAX_JSON_BODY = 16 * 2**20  # an API request (files go through the upload routes, streamed)


async def json_body(request: Request) -> dict[str, Any]:
    """The JSON object body; an empty body is ``{}``. A body over MAX_JSON_BODY is refused as it
    arrives, so a client cannot make the shared server hold gigabytes."""
    raw = await _bounded_body(request)
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    return body


async def _bounded_body(request: Request) -> bytes:
    too_big = invalid(f"the request body is larger than {MAX_JSON_BODY:,} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JSON_BODY:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length != "0")


def base_url(request: Request) -> str:
    """Signed URLs point back at the address the client used to reach us."""
    return str(request.base_url).rstrip("/")
