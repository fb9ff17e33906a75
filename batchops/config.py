"""Settings from flags and the environment. The one place environment variables are read.

Precedence: flags, then ``FIREWORKS_*`` / ``BATCHOPS_*`` variables, then defaults. The API key is
held as a ``Secret`` whose repr and str never show it; only the HTTP client reads ``.reveal()``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_URL = "https://api.fireworks.ai"
LOCAL_ACCOUNT_ID = "local"
STATE_DIR = ".batchops"  # caches only; deleting it is safe
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION = 366 * 86400.0  # longer waits overflow the platform's timeouts (Event.wait)


def parse_duration(text: str, *, allow_zero: bool = False) -> float:
    """``30``, ``30s``, ``1.5s``, ``500ms``, ``2m``, ``1h`` -> seconds: the one parser of
    every duration (flags, and any file that gives one). Plain numbers are seconds. Zero is
    refused unless ``allow_zero`` (a delay of none); negative, NaN, infinite and over a year are
    refused always. Raises ValueError with the accepted forms."""
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else math.nan
    if not (0 < seconds <= MAX_DURATION or (allow_zero and seconds == 0)):
        low = "zero or more" if allow_zero else "positive"
        raise ValueError(f"not a {low} duration: {text!r} (e.g. 30, 30s, 500ms, 2m, 1h)")
    return seconds


class Secret:
    """A string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    api_key: Secret | None = None
    account_id: str | None = None
    base_url: str = DEFAULT_BASE_URL
    project: str | None = None  # the ownership mark's project name; None = derive from the root
    github_actions: bool = False
    step_summary: Path | None = None  # $GITHUB_STEP_SUMMARY

    @property
    def uses_local_backend(self) -> bool:
        """No API key means the embedded local backend (unless a base URL points elsewhere)."""
        return self.api_key is None


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    base_url: str | None = None,
    account_id: str | None = None,
    project: str | None = None,
) -> Settings:
    env = os.environ if env is None else env
    key = env.get("FIREWORKS_API_KEY") or None
    summary = env.get("GITHUB_STEP_SUMMARY") or None
    return Settings(
        api_key=Secret(key) if key else None,
        account_id=account_id or env.get("FIREWORKS_ACCOUNT_ID") or None,
        base_url=(base_url or env.get("FIREWORKS_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
        project=project or env.get("BATCHOPS_PROJECT") or None,
        github_actions=env.get("GITHUB_ACTIONS") == "true",
        step_summary=Path(summary) if summary else None,
    )
