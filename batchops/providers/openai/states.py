"""OpenAI batch states mapped to the reconciler's neutral ones (waiting, running, finished,
failed, expired, cancelled). Unknown future states are "running", never an error (DESIGN §3).
"""

from __future__ import annotations

from typing import Literal

NeutralState = Literal["waiting", "running", "finished", "failed", "expired", "cancelled"]

_STATES: dict[str, NeutralState] = {
    "validating": "waiting",
    "in_progress": "running",
    "finalizing": "running",
    # Cancelling still runs in-flight requests (up to 10 minutes) and then writes partial files.
    "cancelling": "running",
    "completed": "finished",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}
ENDED: frozenset[NeutralState] = frozenset({"finished", "failed", "expired", "cancelled"})


def neutral_state(status: str | None) -> NeutralState:
    """The neutral state of a wire status; case-insensitive (Together sends ``IN_PROGRESS``)."""
    return _STATES.get((status or "").lower(), "running")


def is_live(status: str | None) -> bool:
    """Still working (and, for the enqueued-token quota, still holding its tokens)."""
    return neutral_state(status) not in ENDED
