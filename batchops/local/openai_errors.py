"""Error answers of the local backend's OpenAI Files + Batches routes, in OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}``.

Raised by ``routes_openai``, ``openai_files`` and ``openai_batches``; ``app`` and the middleware
also use ``from_problem`` to answer an ``ApiProblem`` (or an injected fault) on an OpenAI path in
this shape.
"""

from __future__ import annotations

import uuid

from starlette.responses import JSONResponse

from batchops.local.problems import HTTP_STATUS, ApiProblem
from batchops.wire_openai import error_body

OPENAI_PREFIXES = ("/v1/files", "/v1/batches")
# Answers a retry cannot change: the SDK would otherwise retry 409s and 429s three times.
NO_RETRY = {"x-should-retry": "false"}


def is_openai_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in OPENAI_PREFIXES)


class OpenAIProblem(Exception):
    """A refused OpenAI request: HTTP status, message, and the envelope's type/param/code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # the wire name
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.type, self.param, self.code = type, param, code
        self.headers = headers or {}


def bad_request(
    message: str, *, param: str | None = None, code: str | None = None
) -> OpenAIProblem:
    return OpenAIProblem(400, message, param=param, code=code, headers=NO_RETRY)


def not_found(kind: str, object_id: str) -> OpenAIProblem:
    return OpenAIProblem(
        404, f"No {kind} found with id '{object_id}'.", param="id", headers=NO_RETRY
    )


def openai_response(problem: OpenAIProblem) -> JSONResponse:
    body = error_body(problem.message, type=problem.type, param=problem.param, code=problem.code)
    headers = {"x-request-id": f"req_{uuid.uuid4().hex}", **problem.headers}
    return JSONResponse(body, status_code=problem.status, headers=headers)


def from_problem(problem: ApiProblem) -> JSONResponse:
    """An ``ApiProblem`` (a shared helper's refusal, an injected fault) in OpenAI's envelope."""
    status = HTTP_STATUS[problem.code]
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 429:
        kind = "rate_limit_error"
    return openai_response(
        OpenAIProblem(status, problem.message, type=kind, headers=dict(problem.headers))
    )


def auth_failure() -> JSONResponse:
    problem = OpenAIProblem(
        401,
        "Incorrect API key provided.",
        code="invalid_api_key",
        headers=NO_RETRY,
    )
    return openai_response(problem)
