"""One YAML document as plain data with the positions of its keys and values.

Produced by ``batchops.manifest.yamlsrc`` (parsing) and by ``batchops.manifest.stored`` (a
document read back from the manifest cache); read by the loader, the builder and ``locate``. It
imports no YAML library, so a command whose manifests all come from the cache never loads one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Loc = tuple[str | int, ...]
Pos = tuple[int, int]  # 1-based (line, col)


@dataclass
class YamlDocument:
    """One document's data with the positions of its keys and values, by ``loc`` path."""

    data: Any
    start: Pos
    keys: dict[Loc, Pos] = field(default_factory=dict)
    values: dict[Loc, Pos] = field(default_factory=dict)
