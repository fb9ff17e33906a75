"""Input and output lines of OpenAI batches on the local backend.

``scan`` validates a batch's input file the way the Batch API does (every problem as a
``BatchError`` with its 1-based line, all of them up to a cap) and counts the tokens the batch
enqueues; ``result_line`` and ``unfinished_lines`` write OpenAI's output and error-file lines.
Used by ``openai_worker`` and by the worker's run loop for batches that carry an ``openai`` doc.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batchops.local.engines import Outcome, text_of, tokens
from batchops.local.rows import ROLES, lines
from batchops.wire_openai import (
    CHAT_ENDPOINT,
    ERR_DUPLICATE_CUSTOM_ID,
    ERR_EMPTY_FILE,
    ERR_INVALID_JSON_LINE,
    ERR_INVALID_REQUEST,
    ERR_MODEL_MISMATCH,
    ERR_TOO_MANY_TASKS,
    ERR_URL_MISMATCH,
    MAX_REQUESTS_PER_BATCH,
    batch_error,
    output_line,
)

MAX_ERRORS = 100  # errors.data entries kept for one batch; the rest are counted in a last entry


@dataclass
class Scan:
    total: int = 0
    model: str | None = None
    tokens: int = 0  # enqueued input tokens, counted as the echo engine counts prompt tokens
    errors: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0

    def error(self, code: str, message: str, line: int | None, param: str | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(batch_error(code, message, line=line, param=param))
        else:
            self.dropped += 1

    def all_errors(self) -> list[dict[str, Any]]:
        more = [batch_error(ERR_INVALID_REQUEST, f"{self.dropped} more errors not listed")]
        return self.errors + (more if self.dropped else [])


def scan(files: list[tuple[str, Path]], endpoint: str) -> Scan:
    """Validate every line; an empty file, over 50,000 requests or any bad line fails the batch."""
    result, seen = Scan(), set()
    for number, (_, _, raw) in enumerate(lines(files), start=1):
        result.total += 1
        row = _checked(raw, number, endpoint, result)
        if row is None:
            continue
        if row["custom_id"] in seen:
            result.error(ERR_DUPLICATE_CUSTOM_ID, "custom_id is not unique.", number, "custom_id")
        seen.add(row["custom_id"])
        model = row["body"]["model"]
        if result.model is None:
            result.model = model
        elif model != result.model:
            message = f"Requests must all use one model; this one uses {model!r}."
            result.error(ERR_MODEL_MISMATCH, message, number, "body.model")
        result.tokens += prompt_tokens(row["body"])
    if result.total == 0:
        result.error(ERR_EMPTY_FILE, "The batch input file is empty.", None)
    elif result.total > MAX_REQUESTS_PER_BATCH:
        message = f"The batch has {result.total} requests; the limit is {MAX_REQUESTS_PER_BATCH}."
        result.error(ERR_TOO_MANY_TASKS, message, None)
    return result


def _checked(raw: bytes, number: int, endpoint: str, result: Scan) -> dict[str, Any] | None:
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError:
        row = None
    if not isinstance(row, dict):
        result.error(ERR_INVALID_JSON_LINE, "This line is not parseable as valid JSON.", number)
        return None
    problem = _problem(row, endpoint)
    if problem is None:
        return row
    code, message, param = problem
    result.error(code, message, number, param)
    return None


def _problem(row: dict[str, Any], endpoint: str) -> tuple[str, str, str | None] | None:
    custom_id = row.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return ERR_INVALID_REQUEST, "custom_id must be a non-empty string.", "custom_id"
    if row.get("method") != "POST":
        return ERR_INVALID_REQUEST, "method must be POST.", "method"
    if row.get("url") != endpoint:
        message = f"The url {row.get('url')!r} does not match the batch's endpoint {endpoint!r}."
        return ERR_URL_MISMATCH, message, "url"
    body = row.get("body")
    if not isinstance(body, dict):
        return ERR_INVALID_REQUEST, "body must be a JSON object.", "body"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return ERR_INVALID_REQUEST, "body.model must be a non-empty string.", "body.model"
    if body.get("stream"):
        return ERR_INVALID_REQUEST, "Streaming is not supported in a batch.", "body.stream"
    return _chat_problem(body) if endpoint == CHAT_ENDPOINT else _completion_problem(body)


def _chat_problem(body: dict[str, Any]) -> tuple[str, str, str | None] | None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return ERR_INVALID_REQUEST, "body.messages must be a non-empty list.", "body.messages"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return (
                ERR_INVALID_REQUEST,
                f"body.messages[{index}] has no valid role.",
                "body.messages",
            )
        if not isinstance(message.get("content"), str | list | None):
            return (
                ERR_INVALID_REQUEST,
                f"body.messages[{index}].content is invalid.",
                "body.messages",
            )
    return None


def _completion_problem(body: dict[str, Any]) -> tuple[str, str, str | None] | None:
    prompt = body.get("prompt")
    if isinstance(prompt, str) or (
        isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt)
    ):
        return None
    return ERR_INVALID_REQUEST, "body.prompt must be a string or a list of strings.", "body.prompt"


def prompt_tokens(body: dict[str, Any]) -> int:
    """Input tokens of one request, as the echo engine counts them (~4 characters a token)."""
    if "messages" in body:
        return sum(tokens(text_of(m.get("content"))) for m in body["messages"])
    prompt = body.get("prompt")
    return sum(tokens(p) for p in (prompt if isinstance(prompt, list) else [prompt or ""]))


def parse(name: str, number: int, raw: bytes) -> dict[str, Any]:
    """A line ``scan`` already accepted (for ``rows.pending``)."""
    row: dict[str, Any] = orjson.loads(raw)
    return row


def result_line(batch_id: str, outcome: Outcome) -> bytes:
    """The output-file line of a request that ran (a success or an HTTP-style failure)."""
    if outcome.response is not None:
        line = output_line(batch_id, outcome.custom_id, status_code=200, body=outcome.response)
        return orjson.dumps(line) + b"\n"
    error = outcome.error or {}
    status = _status(str(error.get("code", "")))
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {
        "error": {
            "message": str(error.get("message", "")),
            "type": kind,
            "param": None,
            "code": None,
        }
    }
    line = output_line(batch_id, outcome.custom_id, status_code=status, body=body)
    return orjson.dumps(line) + b"\n"


def _status(code: str) -> int:
    if code.isdigit() and 400 <= int(code) <= 599:
        return int(code)
    return {"UNAVAILABLE": 503, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504}.get(code, 500)


UNFINISHED_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}


def unfinished_lines(
    batch_id: str, files: list[tuple[str, Path]], start: int, code: str
) -> Iterator[bytes]:
    """One ``{response: null, error: {code, message}}`` line per request from index ``start``."""
    error = {"code": code, "message": UNFINISHED_MESSAGES[code]}
    for index, (_, _, raw) in enumerate(lines(files)):
        if index < start:
            continue
        try:
            custom_id = orjson.loads(raw)["custom_id"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            continue
        yield orjson.dumps(output_line(batch_id, str(custom_id), error=error)) + b"\n"
