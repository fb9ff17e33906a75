"""How a job's rows go out on its provider: parts (per-batch caps) and waves (a token quota).

The seam the plan shows them through (``batchops.checks.provider_layouts``): a provider kind
that splits big inputs names a function ``layout_of(limits, model, parameters, rows)`` in
``LAYOUTS``, imported on first use; kinds without one send a job as one batch (no layout shown).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# kind -> "module:function" of its layout.
LAYOUTS: dict[str, str] = {"openai": "batchops.providers.openai.parts:layout_of"}


@dataclass(frozen=True)
class Layout:
    """The parts (requests in each) and the waves they are submitted in."""

    parts: tuple[int, ...]
    waves: int
    quota: int | None = None  # the declared enqueued-token quota the waves stay under

    @property
    def rows(self) -> int:
        return sum(self.parts)

    @property
    def shown(self) -> bool:
        """Worth a line of the plan: more than one batch."""
        return len(self.parts) > 1

    def describe(self) -> str:
        """``150,000 rows in 3 parts (50,000 each), 2 waves under the 600,000-token quota``."""
        sizes = set(self.parts)
        if len(sizes) == 1:
            each = f"{self.parts[0]:,} each"
        elif len(self.parts) <= 4:
            each = ", ".join(f"{n:,}" for n in self.parts)
        else:
            each = f"up to {max(self.parts):,} each"
        text = f"{self.rows:,} rows in {len(self.parts)} parts ({each})"
        if self.quota is not None:
            waves = f"{self.waves} wave{'s' if self.waves != 1 else ''}"
            text += f", {waves} under the {self.quota:,}-token quota"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"parts": list(self.parts), "waves": self.waves, "enqueuedTokens": self.quota}


LayoutFn = Callable[
    [Mapping[str, Any], str, Mapping[str, Any], Iterable[Mapping[str, Any]]], Layout
]


def layout_fn(kind: str) -> LayoutFn | None:
    """The layout function of a provider kind; None when it sends every job as one batch."""
    target = LAYOUTS.get(kind)
    if target is None:
        return None
    module, _, function = target.partition(":")
    found: LayoutFn | None = getattr(importlib.import_module(module), function, None)
    return found
