"""One YAML document as plain data with the positions of its keys and values.

Produced by ``batchops.manifest.yamlsrc`` (parsing) and by ``batchops.manifest.stored`` (a
document read back from the manifest cache); read by the loader, the builder and ``locate``. It
imports no YAML library, so a command whose manifests all come from the cache never loads one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

Loc = tuple[str | int, ...]
Pos = tuple[int, int]  # 1-based (line, col)


class Mark(Protocol):
    """Where a YAML node starts (libyaml's mark): 0-based."""

    line: int
    column: int


class YamlDocument:
    """One document's data with the positions of its keys and values, by ``loc`` path.

    The event path (``yamlevents``) hands over the start marks of the document's nodes in the
    order it met them, instead of the two maps: a valid document's positions are rarely asked
    for (only a problem is located), and making them cost a third of parsing a 10,000-job file.
    They are made from the marks when first asked, by walking the data in the same order (its
    mappings keep their keys' order, and nothing changes the data after parsing)."""

    __slots__ = ("_keys", "_marks", "_values", "data", "start")

    def __init__(
        self,
        data: Any,
        start: Pos,
        keys: dict[Loc, Pos] | None = None,
        values: dict[Loc, Pos] | None = None,
        *,
        marks: Sequence[Mark] | None = None,
    ) -> None:
        self.data, self.start = data, start
        self._keys = {} if keys is None and marks is None else keys
        self._values = {} if values is None and marks is None else values
        self._marks = marks

    @property
    def keys(self) -> dict[Loc, Pos]:
        if self._keys is None:
            self._place()
        assert self._keys is not None
        return self._keys

    @property
    def values(self) -> dict[Loc, Pos]:
        if self._values is None:
            self._place()
        assert self._values is not None
        return self._values

    def _place(self) -> None:
        assert self._marks is not None
        keys: dict[Loc, Pos] = {}
        values: dict[Loc, Pos] = {}
        marks = iter(self._marks)
        next(marks)  # the document's own node: ``start``
        _walk(self.data, (), marks, keys, values)
        self._keys, self._values, self._marks = keys, values, None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, YamlDocument):
            return NotImplemented
        mine = (self.data, self.start, self.keys, self.values)
        return mine == (other.data, other.start, other.keys, other.values)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def __repr__(self) -> str:
        return f"YamlDocument(data={self.data!r}, start={self.start!r})"


def _walk(
    node: Any, at: Loc, marks: Iterator[Mark], keys: dict[Loc, Pos], values: dict[Loc, Pos]
) -> None:
    """The nodes below ``node`` in event order: a key, its value, the value's nodes; an item,
    its nodes. Keys and values of mappings are placed; items of sequences only counted."""
    if type(node) is dict:
        for key, value in node.items():
            loc = (*at, key)
            mark = next(marks)
            keys[loc] = (mark.line + 1, mark.column + 1)
            mark = next(marks)
            values[loc] = (mark.line + 1, mark.column + 1)
            _walk(value, loc, marks, keys, values)
    elif type(node) is list:
        for i, item in enumerate(node):
            next(marks)
            _walk(item, (*at, i), marks, keys, values)
