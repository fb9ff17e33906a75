"""Fireworks output datasets -> the neutral results shape (docs/reconciler.md, "Results").

Called by ``FireworksProvider.download_outputs`` on each downloaded output dataset folder, line by
line (memory stays flat). A Fireworks results line is ``{custom_id, response: <completion>}`` and
an error line ``{custom_id, error}``; both become ``{custom_id, text, finish_reason, usage:
{input_tokens, output_tokens, cached_tokens}, error, error_code, job, response}``, the shape every
provider writes, with the raw response kept whole. Lines without a custom_id are copied unchanged,
so that the merge still counts them as unreadable.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from batchops.providers.model import ERRORS_FILE, OUTPUT_FILE


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _error(error: Any) -> tuple[str, str | None]:
    """(message, code) of an error line's ``error`` (an object or a plain string)."""
    if isinstance(error, Mapping):
        code = error.get("code")
        return str(error.get("message") or code or "error"), (str(code) if code else None)
    return (str(error) if error else "error"), None


def neutral(line: Mapping[str, Any], job: str, *, failed: bool) -> dict[str, Any]:
    """One Fireworks output or error line in the neutral shape."""
    response = _mapping(line.get("response"))
    choices = response.get("choices")
    choice = _mapping(choices[0] if isinstance(choices, list) and choices else None)
    message = _mapping(choice.get("message"))
    usage = _mapping(response.get("usage"))
    cached = _mapping(usage.get("prompt_tokens_details")).get("cached_tokens") or 0
    error, code = _error(line.get("error")) if failed else (None, None)
    return {
        "custom_id": line.get("custom_id"),
        "text": None if failed else message.get("content", choice.get("text")),
        "finish_reason": None if failed else choice.get("finish_reason"),
        "usage": {
            "input_tokens": int(usage.get("prompt_tokens") or 0),
            "output_tokens": int(usage.get("completion_tokens") or 0),
            "cached_tokens": int(cached),
        },
        "error": error,
        "error_code": code,
        "job": job,
        "response": line.get("response"),
    }


def _converted(raw: bytes, job: str, *, failed: bool) -> bytes:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw  # the merge counts it as unreadable
    if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
        return raw
    return orjson.dumps(neutral(line, job, failed=failed))


def to_neutral(folder: Path, job: str) -> None:
    """Rewrite the folder's results and error files in the neutral shape (atomically each)."""
    for name, failed in ((OUTPUT_FILE, False), (ERRORS_FILE, True)):
        path = folder / name
        if not path.is_file():
            continue
        staged = path.with_name(path.name + ".neutral")
        with path.open("rb") as src, staged.open("wb") as out:
            for raw in src:
                body = raw.rstrip(b"\r\n")
                if body.strip():
                    out.write(_converted(body, job, failed=failed) + b"\n")
        staged.replace(path)
