"""Per-batch caps and enqueued-token quotas: a job's request lines split into parts, parts
grouped into waves. Pure; called by ``runner`` (submitting) and the plan (showing parts/waves).

- A part is a contiguous range of the rendered input that stays under the provider's per-batch
  caps (requests, bytes) and, with a quota declared, under a token target.
- A wave is a run of consecutive parts whose estimated input tokens fit the usable quota
  (``enqueuedTokens`` minus ``headroom``). At apply time the next part goes out only when the
  tokens of the provider's live batches for the model plus its own fit, so the quota shared with
  other jobs is respected too; the static waves are what ``plan`` shows.
- The part token target divides the usable quota into ``k`` equal slices, ``k`` being how many
  parts one quota's worth of rows needs under the request/byte caps, so each wave fills the quota
  instead of leaving a remainder idle.

Token estimate: about four characters a token for each message's text (the rule OpenAI's
guide gives and the local backend counts by). Real tokenizers differ per text, hence the headroom.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchops.providers.layout import Layout
from batchops.providers.openai.lines import RequestShape, render
from batchops.wire_openai import MAX_BATCH_FILE_BYTES, MAX_REQUESTS_PER_BATCH

DEFAULT_HEADROOM = 0.05


@dataclass(frozen=True)
class Limits:
    """A provider's declared limits (project file ``providers.<name>.limits``)."""

    max_requests: int = MAX_REQUESTS_PER_BATCH
    max_bytes: int = MAX_BATCH_FILE_BYTES
    enqueued_tokens: int | None = None  # per model, across the provider's live batches
    headroom: float = DEFAULT_HEADROOM  # share of the quota left unused for tokenizer error

    @property
    def usable_tokens(self) -> int | None:
        if self.enqueued_tokens is None:
            return None
        return int(self.enqueued_tokens * (1.0 - self.headroom))


@dataclass(frozen=True)
class RowSize:
    size: int  # bytes of the rendered request line, newline included
    tokens: int  # estimated input tokens


@dataclass(frozen=True)
class Part:
    index: int
    start: int  # first row (0-based, in input order)
    stop: int  # one past the last row
    size: int
    tokens: int

    @property
    def requests(self) -> int:
        return self.stop - self.start


class LimitError(ValueError):
    """A single row can never be submitted under these limits."""


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def estimate_tokens(body: Mapping[str, Any]) -> int:
    """Estimated input tokens of one request body."""
    if "messages" in body:
        return sum(_tokens(text_of(m.get("content"))) for m in body["messages"])
    prompt = body.get("prompt")
    return sum(_tokens(str(p)) for p in (prompt if isinstance(prompt, list) else [prompt or ""]))


def token_target(rows: Sequence[RowSize], limits: Limits) -> float:
    """The most tokens one part may hold: the usable quota divided into equal slices."""
    quota = limits.usable_tokens
    if quota is None or not rows:
        return math.inf
    total_tokens = sum(r.tokens for r in rows)
    total_bytes = sum(r.size for r in rows)
    rows_per_quota = quota / (total_tokens / len(rows))
    rows_per_part = min(limits.max_requests, limits.max_bytes / (total_bytes / len(rows)))
    slices = max(1, math.ceil(rows_per_quota / max(1.0, rows_per_part)))
    return quota / slices


def split(rows: Sequence[RowSize], limits: Limits) -> list[Part]:
    """Consecutive parts under every cap; raises LimitError for a row no part can hold."""
    target = token_target(rows, limits)
    quota = limits.usable_tokens
    parts: list[Part] = []
    start, size, tokens = 0, 0, 0
    for i, row in enumerate(rows):
        if row.size > limits.max_bytes or (quota is not None and row.tokens > quota):
            raise LimitError(f"row {i + 1} alone exceeds the provider's per-batch limits")
        full = (
            i - start + 1 > limits.max_requests
            or size + row.size > limits.max_bytes
            or tokens + row.tokens > target
        )
        if full and i > start:
            parts.append(Part(len(parts), start, i, size, tokens))
            start, size, tokens = i, 0, 0
        size, tokens = size + row.size, tokens + row.tokens
    if len(rows) > start:
        parts.append(Part(len(parts), start, len(rows), size, tokens))
    return parts


def waves(parts: Iterable[Part], limits: Limits) -> list[list[Part]]:
    """Consecutive parts grouped so each group's tokens fit the usable quota (one group if none)."""
    quota = limits.usable_tokens
    grouped: list[list[Part]] = []
    for part in parts:
        if grouped and (quota is None or sum(p.tokens for p in grouped[-1]) + part.tokens <= quota):
            grouped[-1].append(part)
        else:
            grouped.append([part])
    return grouped


def limits_from(declared: Mapping[str, Any]) -> Limits:
    """The project file's ``limits`` (camelCase), with OpenAI's documented caps as defaults."""
    base = Limits()
    return Limits(
        max_requests=int(declared.get("maxRequestsPerBatch", base.max_requests)),
        max_bytes=int(declared.get("maxBytesPerBatch", base.max_bytes)),
        enqueued_tokens=(
            int(declared["enqueuedTokens"]) if declared.get("enqueuedTokens") is not None else None
        ),
        headroom=float(declared.get("quotaHeadroom", base.headroom)),
    )


def fits(in_flight_tokens: int, part: Part, limits: Limits) -> bool:
    """May ``part`` be submitted while the provider holds ``in_flight_tokens`` for its model?"""
    quota = limits.usable_tokens
    return quota is None or in_flight_tokens + part.tokens <= quota


def layout_of(
    declared: Mapping[str, Any],
    model: str,
    parameters: Mapping[str, Any],
    rows: Iterable[Mapping[str, Any]],
) -> Layout:
    """The parts and waves ``rows`` are submitted in under the project file's ``limits``, as the
    provider splits them at apply time (the request lines rendered, the same estimate)."""
    limits = limits_from(declared)
    shape = RequestShape.from_manifest(model, parameters)
    sizes = [RowSize(len(render(row, shape)), estimate_tokens(row["body"])) for row in rows]
    parts = split(sizes, limits)
    return Layout(
        tuple(p.requests for p in parts), len(waves(parts, limits)), limits.enqueued_tokens
    )
