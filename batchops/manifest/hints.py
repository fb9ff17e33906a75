"""The "did you mean" hint of every name-level diagnostic (unknown field, kind, dataset, provider).

Called by ``batchops.manifest.locate``, ``build`` and the CLI; it imports no validation library,
so building the desired state from cached documents does not load pydantic to report a typo.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word``, or None when nothing is close."""
    match = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def suggest(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'x'?" for the closest choice, or "" when nothing is close."""
    match = closest(word, choices)
    return f"; did you mean '{match}'?" if match else ""
