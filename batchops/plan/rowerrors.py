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
"""

from __future__ import annotations

import re
from enum import StrEnum


class RowFailure(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"


_TRANSIENT_CODES = frozenset({
    "429", "500", "502", "503", "504", "RESOURCE_EXHAUSTED", "INTERNAL", "UNAVAILABLE",
    "DEADLINE_EXCEEDED", "EXPIRED", "ABORTED", "RATE_LIMIT_EXCEEDED", "RATE_LIMITED",
    "SERVER_ERROR", "TIMEOUT", "BATCH_EXPIRED",
})  # fmt: skip
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


def classify(error: str | None) -> RowFailure:
    """The class of one failed row's ``error`` text (``"<code>: <message>"``)."""
    text = error or ""
    code, sep, message = text.partition(":")
    code = code.strip().upper() if sep else ""
    if code in _TRANSIENT_CODES:
        return RowFailure.TRANSIENT
    if code and (code.startswith("5") and code.isdigit()):
        return RowFailure.TRANSIENT
    if code or _PERMANENT_WORDS.search(text):
        return RowFailure.PERMANENT
    return (
        RowFailure.TRANSIENT if _TRANSIENT_WORDS.search(message or text) else RowFailure.PERMANENT
    )
