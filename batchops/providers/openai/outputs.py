"""OpenAI output and error files -> the neutral results shape, and what an ended batch left undone.

Called by ``provider.download_outputs`` (streaming, line by line: memory stays flat) and by
``provider`` when a continuation needs the rows an expired batch did not run. A line is failed when
it has a top-level ``error`` or a ``response.status_code`` >= 400 (reference §4.3); a line whose
error is ``batch_expired`` or ``batch_cancelled`` never ran, and is what a resume submits again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from batchops.wire_openai import REQ_BATCH_CANCELLED, REQ_BATCH_EXPIRED

NOT_RUN = frozenset({REQ_BATCH_EXPIRED, REQ_BATCH_CANCELLED})


def is_failed(line: Mapping[str, Any]) -> bool:
    response = line.get("response") or {}
    return line.get("error") is not None or int(response.get("status_code") or 0) >= 400


def never_ran(line: Mapping[str, Any]) -> bool:
    error = line.get("error")
    return isinstance(error, Mapping) and error.get("code") in NOT_RUN


def _error(line: Mapping[str, Any]) -> tuple[str, str | None]:
    """(message, code) of a failed line: its top-level ``error`` (a request that never ran or
    timed out), else the HTTP error body the request got (``response.body.error``). OpenAI
    leaves ``code`` null on many HTTP errors (a 500's body is ``{"type": "server_error",
    "code": null}``), so the line's status code stands in for it: the row classifier
    (``plan.rowerrors``) tells a 5xx or 429 (transient) from a 4xx (permanent) by it."""
    response = _mapping(line.get("response"))
    status = response.get("status_code")
    status_code = str(status) if isinstance(status, int) and status >= 400 else None
    error = line.get("error")
    if not isinstance(error, Mapping):
        body = response.get("body")
        error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        code = str(error["code"]) if error.get("code") else status_code
        return str(error.get("message") or code or "error"), code
    if isinstance(error, str) and error:
        return error, status_code  # vLLM's run-batch writes a plain string
    return f"HTTP {status}", status_code


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def neutral(line: Mapping[str, Any], job: str) -> dict[str, Any]:
    """One result line in the shape every provider writes (``providers.model.result_row``)."""
    response = _mapping(line.get("response"))
    body = _mapping(response.get("body"))
    choices = body.get("choices")
    choice = _mapping(choices[0] if isinstance(choices, list) and choices else None)
    message = _mapping(choice.get("message"))
    usage = _mapping(body.get("usage"))
    cached = _mapping(usage.get("prompt_tokens_details")).get("cached_tokens") or 0
    failed = is_failed(line)
    error, code = _error(line) if failed else (None, None)
    return {
        "custom_id": line.get("custom_id"),
        "text": None if failed else message.get("content", choice.get("text")),
        "finish_reason": None if failed else choice.get("finish_reason"),
        "usage": {
            "input_tokens": usage.get("prompt_tokens") or 0,
            "output_tokens": usage.get("completion_tokens") or 0,
            "cached_tokens": cached,
        },
        "error": error,
        "error_code": code,
        "job": job,
        "response": dict(response) or None,
    }


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a downloaded file; torn or foreign lines are skipped (the merge counts
    rows, so a lost one is reported there)."""
    if not path.is_file():
        return
    with path.open("rb") as handle:
        for raw in handle:
            if not raw.strip():
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict) and isinstance(value.get("custom_id"), str):
                yield value


def convert(raw_files: list[Path], job: str, output: Path, errors: Path) -> tuple[int, int]:
    """Append the neutral form of every line of ``raw_files`` to ``output`` / ``errors``."""
    counts = [0, 0]
    with output.open("ab") as ok, errors.open("ab") as bad:
        for path in raw_files:
            for line in read_lines(path):
                failed = is_failed(line)
                (bad if failed else ok).write(orjson.dumps(neutral(line, job)) + b"\n")
                counts[failed] += 1
    return counts[0], counts[1]


def ran_ids(raw_files: list[Path]) -> set[str]:
    """custom_ids that ran (answered or failed for a reason of their own), in these files."""
    return {line["custom_id"] for p in raw_files for line in read_lines(p) if not never_ran(line)}
