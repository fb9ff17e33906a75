"""What the renderer needs of the manifest's declarations, structurally (no import of it).

``batchops.sources`` sits beside ``batchops.manifest`` in the layering, so it names the fields it
reads here instead of importing ``batchops.manifest.desired``.
"""

from __future__ import annotations

from typing import Protocol


class SourceLike(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def col(self) -> int: ...


class PartLike(Protocol):
    """What we need of ``batchops.manifest.desired.TemplatePart``."""

    @property
    def text(self) -> str: ...
    @property
    def origin(self) -> SourceLike: ...
    @property
    def role(self) -> str | None: ...
    @property
    def block(self) -> bool: ...
