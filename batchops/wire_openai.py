"""Wire constants and shapes of the OpenAI Files + Batches API (see the shared
openai-batch-api.md reference).

Shared by the embedded backend (``batchops.local``, the server side) and, later, the
OpenAI-compatible provider (the client side), so that both sides of the contract are one
definition. Plain constants and dict builders: the objects are JSON with snake_case keys, as on
the wire.
"""

from __future__ import annotations

import hashlib
from typing import Any

# Batch states (lowercase on the wire).
BATCH_VALIDATING = "validating"
BATCH_FAILED = "failed"
BATCH_IN_PROGRESS = "in_progress"
BATCH_FINALIZING = "finalizing"
BATCH_COMPLETED = "completed"
BATCH_EXPIRED = "expired"
BATCH_CANCELLING = "cancelling"
BATCH_CANCELLED = "cancelled"
TERMINAL_BATCH_STATES = frozenset({BATCH_FAILED, BATCH_COMPLETED, BATCH_EXPIRED, BATCH_CANCELLED})

CHAT_ENDPOINT = "/v1/chat/completions"
COMPLETIONS_ENDPOINT = "/v1/completions"
COMPLETION_WINDOW = "24h"

MAX_REQUESTS_PER_BATCH = 50_000
MAX_BATCH_FILE_BYTES = 200 * 1024 * 1024
MAX_FILE_BYTES = 512 * 1024 * 1024
METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512
BATCH_LIST_LIMIT = (1, 100, 20)  # (min, max, default) of GET /v1/batches ?limit
FILE_LIST_LIMIT = (1, 10_000, 10_000)  # of GET /v1/files ?limit

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
PURPOSE_BATCH = "batch"
PURPOSE_BATCH_OUTPUT = "batch_output"
BATCH_FILE_TTL = 30 * 86400  # purpose=batch uploads expire 30 days after upload

# Batch-level error codes (in a failed batch's ``errors.data``) and per-request codes (the
# top-level ``error`` of an error-file line).
ERR_INVALID_JSON_LINE = "invalid_json_line"
ERR_DUPLICATE_CUSTOM_ID = "duplicate_custom_id"
ERR_URL_MISMATCH = "url_mismatch"
ERR_MODEL_MISMATCH = "model_mismatch"
ERR_EMPTY_FILE = "empty_file"
ERR_TOO_MANY_TASKS = "too_many_tasks"
ERR_TOKEN_LIMIT = "token_limit_exceeded"  # noqa: S105 - an error code, not a secret
ERR_INVALID_REQUEST = "invalid_request"
REQ_BATCH_EXPIRED = "batch_expired"
REQ_BATCH_CANCELLED = "batch_cancelled"


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",  # the wire name
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The HTTP error envelope: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def batch_error(
    code: str, message: str, *, line: int | None = None, param: str | None = None
) -> dict[str, Any]:
    """One entry of a batch's ``errors.data`` (``line`` is 1-based)."""
    return {"code": code, "message": message, "param": param, "line": line}


def request_id(batch_id: str, custom_id: str) -> str:
    """A stable per-request ID: a row rewritten after a restart keeps its ID."""
    return hashlib.sha256(f"{batch_id}\0{custom_id}".encode()).hexdigest()[:32]


def output_line(
    batch_id: str,
    custom_id: str,
    *,
    status_code: int | None = None,
    body: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A line of a batch's output or error file: ``{id, custom_id, response, error}``."""
    rid = request_id(batch_id, custom_id)
    response = (
        None
        if status_code is None
        else {"status_code": status_code, "request_id": f"req_{rid}", "body": body}
    )
    return {"id": f"batch_req_{rid}", "custom_id": custom_id, "response": response, "error": error}


def failed_line(line: dict[str, Any]) -> bool:
    """How a reader must judge an output line: failed if it has an error or a status >= 400."""
    response = line.get("response") or {}
    return line.get("error") is not None or int(response.get("status_code") or 0) >= 400
