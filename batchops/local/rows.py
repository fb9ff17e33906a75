"""Input rows of a batch job: validation (one bad row fails the whole job, as on the real service)
and streaming iteration with a resumable cursor. Used by ``worker``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

ROLES = ("system", "user", "assistant", "tool")


class RowError(Exception):
    """An invalid input row; the message names the file and 1-based line."""


def lines(files: list[tuple[str, Path]]) -> Iterator[tuple[str, int, bytes]]:
    """(filename, line number, raw line) for every non-blank line, files in the given order."""
    for name, path in files:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if raw.strip():
                    yield name, number, raw


def parse(name: str, number: int, raw: bytes) -> dict[str, Any]:
    where = f"chat dataset validation failed on {name}:{number}"
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RowError(f"Dataset has a syntax error: {where}: invalid JSON") from None
    problem = _problem(row)
    if problem:
        raise RowError(f"Dataset has a syntax error: {where}: {problem}")
    return row  # type: ignore[no-any-return]


def _problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "each line must be a JSON object"
    custom_id = row.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "missing custom_id"
    body = row.get("body")
    if not isinstance(body, dict):
        return "missing body"
    if "prompt" in body:  # a COMPLETION row: a prompt instead of messages, never both
        return _prompt_problem(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "body.messages must be a non-empty list"
    return next(filter(None, (_message_problem(i, m) for i, m in enumerate(messages, 1))), None)


def _prompt_problem(body: dict[str, Any]) -> str | None:
    if "messages" in body:
        return "body has both messages and prompt"
    prompt = body["prompt"]
    if isinstance(prompt, str) and prompt:
        return None
    if isinstance(prompt, list) and prompt and all(isinstance(p, str | int) for p in prompt):
        return None  # a list of strings, or of token IDs, as /v1/completions takes
    return "body.prompt must be a non-empty string or list"


def _message_problem(index: int, message: Any) -> str | None:
    if not isinstance(message, dict):
        return f"message {index} must be an object"
    role = message.get("role")
    if role not in ROLES:
        return (
            f"invalid role {role} in message {index}, must be 'system', 'user', "
            "'assistant' or 'tool'"
        )
    if not isinstance(message.get("content"), str | list | None):
        return f"invalid content in message {index}"
    return None


def scan(files: list[tuple[str, Path]], done: set[str]) -> int:
    """Validate every row; return how many still need processing (custom_id not in ``done``)."""
    seen: set[str] = set()
    todo = 0
    for name, number, raw in lines(files):
        custom_id = parse(name, number, raw)["custom_id"]
        if custom_id in seen:
            raise RowError(
                f"Dataset has a syntax error: chat dataset validation failed on "
                f"{name}:{number}: duplicate custom_id {custom_id}"
            )
        seen.add(custom_id)
        todo += custom_id not in done
    return todo


def pending(
    files: list[tuple[str, Path]],
    done: set[str],
    start: int,
    *,
    parser: Callable[[str, int, bytes], dict[str, Any]] = parse,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(input index, row) from input index ``start`` on, skipping rows already done."""
    for index, (name, number, raw) in enumerate(lines(files)):
        if index < start:
            continue
        row = parser(name, number, raw)
        if row["custom_id"] not in done:
            yield index, row
