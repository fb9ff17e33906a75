"""The fastest way through ordinary manifests: libyaml's events straight to data and positions.

Called first by ``yamlsrc.parse_documents``. PyYAML's composer builds a node per value and the
converter then walks the nodes again, both in Python; this builds the plain data and the
key/value positions from libyaml's event stream in one loop, with no recursion. It handles what
real manifests hold (mappings, sequences, scalars) and gives up, returning None, on anything else
(an anchor or alias, a merge key, a tag it does not know, a non-scalar or duplicate key, deep
nesting, a syntax error): ``yamlsrc`` then parses the text on its own paths, which accept or
refuse exactly as before and word every message. The answer is the same either way
(tests/manifest/test_yaml_paths.py compares them).
"""

from __future__ import annotations

import importlib
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from batchops.manifest.doc import YamlDocument
from batchops.manifest.yamlsrc import MAX_DEPTH

_STR, _NULL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null"
_MAP_TAGS = (None, "!", "tag:yaml.org,2002:map")
_SEQ_TAGS = (None, "!", "tag:yaml.org,2002:seq")
_CParser: Any = importlib.import_module("yaml._yaml").CParser if yaml.__with_libyaml__ else None


class _GiveUp(Exception):
    """Something this path leaves to the composer."""


class _Scalars(SafeConstructor, Resolver):
    """Resolves and constructs plain scalars exactly as SafeLoader does."""

    def __init__(self) -> None:
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


class _Frame:
    __slots__ = ("container", "key", "loc")

    def __init__(self, container: dict[Any, Any] | list[Any], loc: tuple[Any, ...]) -> None:
        self.container = container
        self.loc = loc
        self.key: Any = _NO_KEY


_NO_KEY = object()


def parse_events(text: str, max_nodes: int) -> list[YamlDocument] | None:
    """Every non-empty document of ``text``, or None to let the composer decide."""
    if _CParser is None:
        return None
    try:
        return _Builder(max_nodes).run(_CParser(text))
    except (_GiveUp, yaml.YAMLError, ValueError):
        return None


class _Builder:
    def __init__(self, max_nodes: int) -> None:
        self.max_nodes = max_nodes
        self.scalars = _Scalars()
        self.tags: dict[tuple[str, Any], str] = {}  # (value, implicit) -> resolved tag

    def run(self, parser: Any) -> list[YamlDocument]:
        docs: list[YamlDocument] = []
        while True:
            event = parser.get_event()
            kind = type(event)
            if kind is DocumentStartEvent:
                doc = self.document(parser)
                if doc is not None:
                    docs.append(doc)
            elif kind is StreamEndEvent:
                return docs
            elif kind is not StreamStartEvent:
                raise _GiveUp

    def document(self, parser: Any) -> YamlDocument | None:
        """One document's events up to its end; None for an empty (null) document."""
        doc = YamlDocument(data=None, start=(1, 1))
        stack: list[_Frame] = []
        count, root_tag = 0, ""
        while True:
            event = parser.get_event()
            kind = type(event)
            if kind is DocumentEndEvent:
                return None if root_tag == _NULL else doc
            if kind is MappingEndEvent or kind is SequenceEndEvent:
                stack.pop()
                continue
            count += 1
            if count > self.max_nodes:
                raise _GiveUp
            value, tag = self.value(event, kind)
            frame = stack[-1] if stack else None
            mark = event.start_mark
            pos = (mark.line + 1, mark.column + 1)
            if frame is None:
                doc.data, doc.start, root_tag = value, pos, tag
                loc: tuple[Any, ...] = ()
            elif type(frame.container) is list:
                loc = (*frame.loc, len(frame.container))
                frame.container.append(value)
            elif frame.key is _NO_KEY:
                self.key(frame, value, tag, kind, doc, pos)
                continue
            else:
                loc = (*frame.loc, frame.key)
                doc.values[loc] = pos
                frame.container[frame.key] = value
                frame.key = _NO_KEY
            if kind is not ScalarEvent:
                if len(loc) > MAX_DEPTH:
                    raise _GiveUp
                stack.append(_Frame(value, loc))

    def key(self, frame: _Frame, key: Any, tag: str, kind: type, doc: YamlDocument,
            pos: tuple[int, int]) -> None:  # fmt: skip
        if kind is not ScalarEvent or tag == "tag:yaml.org,2002:merge" or key in frame.container:
            raise _GiveUp
        frame.key = key
        doc.keys[(*frame.loc, key)] = pos

    def value(self, event: Any, kind: type) -> tuple[Any, str]:
        if getattr(event, "anchor", None) is not None:
            raise _GiveUp
        if kind is ScalarEvent:
            return self.scalar(event)
        if kind is MappingStartEvent and event.tag in _MAP_TAGS:
            return {}, ""
        if kind is SequenceStartEvent and event.tag in _SEQ_TAGS:
            return [], ""
        raise _GiveUp  # an alias, or a tagged collection

    def scalar(self, event: Any) -> tuple[Any, str]:
        tag = event.tag
        if tag is None or tag == "!":
            key = (event.value, event.implicit)
            tag = self.tags.get(key)
            if tag is None:
                tag = self.tags[key] = self.scalars.resolve(ScalarNode, *key)  # type: ignore[no-untyped-call]
        if tag == _STR:
            return event.value, tag
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return self.scalars.construct_object(node, deep=True), tag
        except ConstructorError as exc:
            raise _GiveUp from exc
        finally:
            self.scalars.constructed_objects.clear()  # keyed by node: one use each
