"""Turns HTTP error responses and httpx failures into the project's error tree.

Called by the Fireworks client for every non-2xx answer and every exception httpx raises. Both
error body shapes the service uses are understood: grpc-gateway ``{"code": 5, "message": ...}``
(numeric code, named through ``RPC_NAMES``) and the OpenAI-style ``{"error": {"message", "code"}}``.
Messages carry the method, the path (never a query string: signed URLs keep their signature there)
and the server's words, with the API key scrubbed should a server ever echo it.
"""

from __future__ import annotations

from typing import Any

import httpx

from batchops.errors import (
    ApiError,
    AuthError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from batchops.providers.fireworks.names import RPC_NAMES
from batchops.providers.fireworks.retry import parse_retry_after
from batchops.textsafe import redact

MAX_MESSAGE = 500  # a proxy's HTML error page is not worth more than this

_BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
}


def error_class(status: int) -> type[ApiError]:
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ApiError)


def error_from_response(
    response: httpx.Response, *, method: str, path: str, secret: str | None, wall_now: float
) -> ApiError:
    """The error for a non-2xx response whose body has been read."""
    code, message = parse_error_body(response)
    message = scrub(message or response.reason_phrase or "error", secret)
    retry_after = parse_retry_after(response.headers, wall_now=wall_now)
    cls = error_class(response.status_code)
    return cls(
        message,
        method=method,
        path=path,
        status=response.status_code,
        code=scrub(code, secret),
        retry_after=retry_after,
    )


def error_from_exception(exc: Exception, *, method: str, path: str, secret: str | None) -> ApiError:
    """The error for an httpx exception: no response (retryable) or a misuse (not retryable).

    Only the exception's class and message are used; httpx messages hold no headers, and the
    request object they carry (with its Authorization header) is not rendered.
    """
    text = scrub(f"{type(exc).__name__}: {exc}"[:MAX_MESSAGE], secret)
    if isinstance(exc, httpx.TransportError):
        return TransportError(text, method=method, path=path)
    return ApiError(text, method=method, path=path)


def parse_error_body(response: httpx.Response) -> tuple[str, str]:
    """(code name, message) from either JSON error shape, or from the raw text."""
    try:
        body: Any = response.json()
    except ValueError:
        return "", response.text.strip()[:MAX_MESSAGE]
    if not isinstance(body, dict):
        return "", str(body)[:MAX_MESSAGE]
    inner = body.get("error")
    if isinstance(inner, dict):
        return _code_name(inner.get("code")), str(inner.get("message") or "")[:MAX_MESSAGE]
    if isinstance(inner, str):  # {"error": "text"}, as some proxies answer
        return "", inner[:MAX_MESSAGE]
    return _code_name(body.get("code")), str(body.get("message") or "")[:MAX_MESSAGE]


def _code_name(code: object) -> str:
    if isinstance(code, bool) or code is None:
        return ""
    if isinstance(code, int):
        return RPC_NAMES.get(code, str(code))
    return str(code)


def scrub(text: str, secret: str | None) -> str:
    """Remove the API key from text a server or library produced, in any encoding a server
    might echo it in (``textsafe.redact``: percent-encoded, JSON-escaped, base64...)."""
    return redact(text, secret)
