"""Why a row failed, in two classes: transient (worth asking again) or permanent (never). Pure.

A failed row's ``error`` in the results schema is ``"<code>: <message>"`` as its provider gave it
(docs/reconciler.md). ``classify`` reads the code first, then words of the message:

- transient: rate limits (429, ``RESOURCE_EXHAUSTED``, "rate limit"), server errors (5xx,
  ``INTERNAL``, ``UNAVAILABLE``), timeouts (``DEADLINE_EXCEEDED``, "timeout", "timed out") and
  expiry (``EXPIRED``, "expired": the window ran out before the row ran);
- permanent: everything else, among them invalid requests (400, ``INVALID_ARGUMENT``), context
  too long, content policy, and ``RESPONSE_FORMAT`` (an answer that breaks the job's
  ``responseFormat`` schema). An unknown error is permanent: a row is paid for again only when
  asking again can change the outcome.

``batchops.row_retries`` classifies the rows of a job's errors file; the planner sends the
transient ones again (``spec.rowRetries`` times at most) and reports the permanent ones.
``summarize`` turns the same classification into what ``status``, ``describe`` and ``batchops
results`` show: rows per class, rows per reason code, and a few example messages.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class RowFailure(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"


_TRANSIENT_CODES = frozenset(
    {
        "429",
        "500",
        "502",
        "503",
        "504",
        "RESOURCE_EXHAUSTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
        "EXPIRED",
        "ABORTED",
        "RATE_LIMIT_EXCEEDED",
        "RATE_LIMITED",
        "SERVER_ERROR",
        "TIMEOUT",
        "BATCH_EXPIRED",
    }
)
_PERMANENT_WORDS = re.compile(
    r"context|too long|maximum.*length|content.?(policy|filter)|safety|invalid|schema|"
    r"response_?format",
    re.IGNORECASE,
)
_TRANSIENT_WORDS = re.compile(
    r"rate.?limit|too many requests|time.?out|timed out|temporar|overload|unavailable|expired|"
    r"try again",
    re.IGNORECASE,
)


def _split(text: str) -> tuple[str, str]:
    """(code, message) of ``"<code>: <message>"``; the code is "" when there is none."""
    code, sep, message = text.partition(":")
    return (code.strip().upper(), message) if sep else ("", text)


def classify(error: str | None) -> RowFailure:
    """The class of one failed row's ``error`` text (``"<code>: <message>"``)."""
    text = error or ""
    code, message = _split(text)
    if code in _TRANSIENT_CODES:
        return RowFailure.TRANSIENT
    if code and (code.startswith("5") and code.isdigit()):
        return RowFailure.TRANSIENT
    if code or _PERMANENT_WORDS.search(text):
        return RowFailure.PERMANENT
    return (
        RowFailure.TRANSIENT if _TRANSIENT_WORDS.search(message or text) else RowFailure.PERMANENT
    )


EXAMPLES = 3  # example messages kept per class
NO_CODE = "(no code)"


@dataclass(frozen=True)
class FailureSummary:
    """A job's failed rows by class (``classify``): counts, rows per reason code, examples.

    ``reasons`` is (class, code, rows), most rows first; ``examples`` (class, "custom_id:
    message"), the first few of each class in file order. Both hold dataset and server text:
    renderers print them through ``textsafe``."""

    transient: int
    permanent: int
    reasons: tuple[tuple[str, str, int], ...]
    examples: tuple[tuple[str, str], ...]

    @property
    def failed(self) -> int:
        return self.transient + self.permanent

    def to_json(self) -> dict[str, Any]:
        def of(kind: RowFailure) -> dict[str, Any]:
            return {
                "rows": self.transient if kind is RowFailure.TRANSIENT else self.permanent,
                "reasons": {code: n for k, code, n in self.reasons if k == kind},
                "examples": [text for k, text in self.examples if k == kind],
            }

        return {"transient": of(RowFailure.TRANSIENT), "permanent": of(RowFailure.PERMANENT)}

    def text(self, code_text: Callable[[str], str] = str) -> str:
        """``2 transient (429 x2), 1 permanent (INVALID_ARGUMENT x1)``: our words, and each
        code (server text) through ``code_text`` (by default as it is: the caller's to make
        inert)."""
        parts = []
        for kind, count in (
            (RowFailure.TRANSIENT, self.transient),
            (RowFailure.PERMANENT, self.permanent),
        ):
            if count:
                codes = ", ".join(
                    f"{code_text(code)} x{n:,}" for k, code, n in self.reasons if k == kind
                )
                parts.append(f"{count:,} {kind.value} ({codes})")
        return ", ".join(parts)


def summarize(
    rows: Iterable[tuple[str, str | None]], *, examples: int = EXAMPLES, width: int = 200
) -> FailureSummary:
    """The summary of failed rows given as (custom_id, ``"<code>: <message>"``)."""
    counts: Counter[RowFailure] = Counter()
    reasons: Counter[tuple[str, str]] = Counter()
    shown: list[tuple[str, str]] = []
    for cid, error in rows:
        kind = classify(error)
        counts[kind] += 1
        code, message = _split(error or "")
        reasons[(kind.value, code or NO_CODE)] += 1
        if counts[kind] <= examples:
            shown.append((kind.value, f"{cid}: {message.strip()}"[:width]))
    ordered = sorted(
        reasons.items(), key=lambda item: (item[0][0] != "transient", -item[1], item[0][1])
    )
    return FailureSummary(
        transient=counts[RowFailure.TRANSIENT],
        permanent=counts[RowFailure.PERMANENT],
        reasons=tuple((kind, code, n) for (kind, code), n in ordered),
        examples=tuple(shown),
    )
