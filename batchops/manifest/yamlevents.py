"""The fastest way through ordinary manifests: libyaml's events straight to data and positions.

Called first by ``yamlsrc.parse_documents``. PyYAML's composer builds a node per value and the
converter then walks the nodes again, both in Python; this builds the plain data from libyaml's
event stream in one loop, with no recursion, keeping each node's start mark (the document makes
its key/value positions from them when asked: ``doc.YamlDocument``). It handles what
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
_MERGE = "tag:yaml.org,2002:merge"
_IMMUTABLE = frozenset({str, int, float, bool, type(None)})
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
        # A plain scalar's text -> its tag and value, for strings and the immutable values.
        self.plain: dict[str, tuple[str, Any]] = {}

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
        """One document's events up to its end; None for an empty (null) document.

        The hot loop of a big load: names bound to locals, the open container's state held in
        locals (pushed and popped as tuples), plain scalars resolved through a cache by text,
        and each node's start mark kept as it comes: the document makes its key and value
        positions from them only if they are asked for (``doc.YamlDocument``)."""
        marks: list[Any] = []
        keep = marks.append
        get_event, max_nodes, scalar = parser.get_event, self.max_nodes, self.scalar
        plain, scalar_event = self.plain, ScalarEvent
        stack: list[tuple[Any, bool, Any]] = []
        # The open container, whether it is a list, and the key awaiting its value.
        container: Any = None
        is_list, key = False, _NO_KEY
        count, root_tag, data, start = 0, "", None, (1, 1)
        while True:
            event = get_event()
            kind = type(event)
            if kind is scalar_event:
                if event.anchor is not None:
                    raise _GiveUp
                tag = event.tag
                if (tag is None or tag == "!") and event.implicit[0]:  # "!" too, as PyYAML does
                    text = event.value
                    known = plain.get(text)
                    if known is None:
                        known = self.plain_scalar(event, text)
                    tag, value = known
                elif tag is None or tag == "!" or tag == _STR:
                    value, tag = event.value, _STR
                else:
                    value = scalar(event, tag)
            elif kind is DocumentEndEvent:
                return None if root_tag == _NULL else YamlDocument(data, start, marks=marks)
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                container, is_list, key = stack.pop()
                continue
            elif kind is MappingStartEvent and event.anchor is None and event.tag in _MAP_TAGS:
                value, tag = {}, ""
            elif kind is SequenceStartEvent and event.anchor is None and event.tag in _SEQ_TAGS:
                value, tag = [], ""
            else:
                raise _GiveUp  # an alias, an anchor, or a tagged collection
            count += 1
            if count > max_nodes:
                raise _GiveUp
            mark = event.start_mark
            keep(mark)
            if container is None:
                data, root_tag, start = value, tag, (mark.line + 1, mark.column + 1)
            elif is_list:
                container.append(value)
            elif key is _NO_KEY:
                if kind is not scalar_event or tag == _MERGE or value in container:
                    raise _GiveUp
                key = value
                continue
            else:
                container[key] = value
                key = _NO_KEY
            if kind is not scalar_event:
                if len(stack) > MAX_DEPTH:  # the container's depth (its loc's length)
                    raise _GiveUp
                stack.append((container, is_list, key))
                container, is_list, key = value, kind is SequenceStartEvent, _NO_KEY

    def plain_scalar(self, event: Any, text: str) -> tuple[str, Any]:
        """A plain (unquoted, untagged) scalar's tag and value, as SafeLoader makes them;
        remembered by text when the value is a string or immutable (not a NaN: two NaN keys are
        two keys, one remembered NaN would be a duplicate key)."""
        tag: str = self.scalars.resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        value = text if tag == _STR else self.scalar(event, tag)
        if type(value) in _IMMUTABLE and value == value:  # not NaN
            self.plain[text] = (tag, value)
        return tag, value

    def scalar(self, event: Any, tag: str) -> Any:
        """A scalar that is not a plain string, constructed exactly as SafeLoader does."""
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return self.scalars.construct_object(node, deep=True)
        except ConstructorError as exc:
            raise _GiveUp from exc
        finally:
            self.scalars.constructed_objects.clear()  # keyed by node: one use each
