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


async def json_body(request: Request) -> dict[str, Any]:
    """The JSON object body; an empty body is ``{}``."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    return body


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length != "0")


def base_url(request: Request) -> str:
    """Signed URLs point back at the address the client used to reach us."""
    return str(request.base_url).rstrip("/")
