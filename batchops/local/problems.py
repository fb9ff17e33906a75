"""Error answers of the local backend, shaped like the real service's.

Route handlers raise ``ApiProblem``; ``app.create_app`` turns it into the grpc-gateway body
``{"code": <number>, "message": ..., "details": []}`` with the mapped HTTP status. Auth failures use
the OpenAI-style envelope the real front end sends, with HTTP 403.
"""

from __future__ import annotations

import uuid

from starlette.responses import JSONResponse

from batchops.providers.fireworks.wire import RPC_CODES

# google.rpc code name -> HTTP status (the reference's gatewayCode table).
HTTP_STATUS = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}


class ApiProblem(Exception):
    """A request the backend refuses, with a google.rpc code name and a message."""

    def __init__(self, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


def not_found(what: str) -> ApiProblem:
    return ApiProblem("NOT_FOUND", f"{what} not found")


def invalid(message: str) -> ApiProblem:
    return ApiProblem("INVALID_ARGUMENT", message)


def problem_response(problem: ApiProblem) -> JSONResponse:
    body = {"code": RPC_CODES[problem.code], "message": problem.message, "details": []}
    return JSONResponse(body, status_code=HTTP_STATUS[problem.code], headers=problem.headers)


def auth_failure_response() -> JSONResponse:
    body = {
        "error": {
            "message": "The API key you provided is invalid.",
            "param": None,
            "code": "UNAUTHORIZED",
            "type": "error",
        },
        "request_id": uuid.uuid4().hex,
    }
    return JSONResponse(body, status_code=403)
