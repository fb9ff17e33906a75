"""Safe YAML to plain data, remembering where every key and value was written.

Called by ``batchops.manifest.loader``. Documents are *composed* with ``yaml.SafeLoader`` (no
arbitrary tags) and converted by hand, so that (a) every mapping key and value keeps its 1-based
line/col, which lets pydantic ``loc`` tuples point back into the file, and (b) alias expansion is
counted: a "billion laughs" document is refused instead of being expanded into memory.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from batchops.manifest.doc import Loc, Pos, YamlDocument

MAX_NODES = 100_000  # per document, counting every alias expansion; real manifests use < 1,000
_MAP_TAG, _SEQ_TAG = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
MAX_DEPTH = 64  # nesting; keeps the converter's recursion far from Python's limit


@dataclass(frozen=True)
class YamlProblem:
    pos: Pos
    message: str


class _Refused(Exception):
    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(message)
        self.problem = YamlProblem(pos, message)


def _pos(mark: yaml.Mark | None) -> Pos:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def parse_documents(
    text: str, *, max_nodes: int = MAX_NODES
) -> tuple[list[YamlDocument], list[YamlProblem]]:
    """Every non-empty document of ``text``, and the problems that stopped or skipped some.

    libyaml's events are turned into data directly first (``yamlevents``: 10,000 documents in
    about 0.4 s); anything unusual there goes to libyaml under PyYAML's composer (1,050 documents
    in 0.4 s instead of 2 s); if that finds any problem, the pure-Python loader parses the file
    again, because its messages and positions are the ones
    users (and the tests) see. Both compose into the same nodes and marks.
    """
    from batchops.manifest.yamlevents import parse_events  # it builds on this module's types

    fast = parse_events(text, max_nodes)
    if fast is None:
        fast = _parse_fast(text, max_nodes)
    return (fast, []) if fast is not None else _parse_with(_Loader, text, max_nodes)


def _parse_fast(text: str, max_nodes: int) -> list[YamlDocument] | None:
    """libyaml's answer, or None for any doubt. libyaml takes tabs as separators where PyYAML
    refuses them: text with a tab takes the slow path, so both accept exactly the same files."""
    if not _FAST or "\t" in text:
        return None
    try:
        docs, problems = _parse_with(_FastLoader, text, max_nodes)
    except ValueError:  # e.g. a lone surrogate libyaml cannot encode; PyYAML explains it
        return None
    return None if problems else docs


def _parse_with(
    make: type[_Loader | _FastLoader], text: str, max_nodes: int
) -> tuple[list[YamlDocument], list[YamlProblem]]:
    docs: list[YamlDocument] = []
    problems: list[YamlProblem] = []
    loader: _Loader | _FastLoader | None = None
    try:
        loader = make(text)  # the pure-Python reader refuses control characters right here
        while loader.check_node():
            node = loader.get_node()
            if node is None or _is_null(node):
                continue  # an empty document (e.g. a trailing '---') declares nothing
            try:
                docs.append(_Converter(loader, max_nodes).document(node))
            except _Refused as exc:
                problems.append(exc.problem)
    except yaml.MarkedYAMLError as exc:
        problems.append(_syntax_problem(exc))
    except yaml.reader.ReaderError as exc:  # a control character: no mark, but a position
        problems.append(_reader_problem(exc, text))
    except yaml.YAMLError as exc:  # reader errors (control characters) carry no problem_mark
        problems.append(YamlProblem((1, 1), f"invalid YAML: {exc}"))
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        problems.append(YamlProblem((1, 1), "invalid YAML: nesting too deep; refused"))
    finally:
        if loader is not None:
            loader.dispose()
    return docs, problems


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses deep flow nesting while scanning: PyYAML's scanner re-checks every
    open level at each token, so 5,000 nested '[' (10 KB) would otherwise take seconds."""

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            message = f"nesting deeper than {MAX_DEPTH} levels; refused"
            raise yaml.scanner.ScannerError(None, None, message, self.get_mark())
        super().fetch_flow_collection_start(TokenClass)


# libyaml's scanner and parser, when the PyYAML wheel bundles it. Without it, _FastLoader (then
# built on the pure-Python parser, for a consistent class) is never used.
_FAST = bool(yaml.__with_libyaml__)
_CParser: Any = importlib.import_module("yaml._yaml").CParser if _FAST else yaml.parser.Parser


class _FastLoader(_CParser, Composer, SafeConstructor, Resolver):  # type: ignore[misc]
    """libyaml's scanner and parser under PyYAML's (Python) composer. Not libyaml's composer: that
    one recurses in C once per nesting level and kills the process (SIGSEGV) at some tens of
    thousands of levels; this one stops just deeper than the converter accepts, and the
    pure-Python loader then reports the problem."""

    def __init__(self, text: str) -> None:
        _CParser.__init__(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.depth = 0

    # Composer's methods, not CParser's (which come first in the MRO).
    check_node = Composer.check_node
    get_node = Composer.get_node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH + 2:  # the converter refuses MAX_DEPTH + 1 already
                raise ComposerError(None, None, "nesting too deep", None)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _reader_problem(exc: yaml.reader.ReaderError, text: str) -> YamlProblem:
    line = text.count("\n", 0, exc.position) + 1
    col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    char = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return YamlProblem((line, col), f"invalid YAML: character #x{char:04x} is not allowed")


def _syntax_problem(exc: yaml.MarkedYAMLError) -> YamlProblem:
    mark = exc.problem_mark or exc.context_mark
    message = f"invalid YAML: {exc.problem or exc.context}"
    # A scanner error is often only noticed at the end of the file (an unclosed quote); its
    # context says which token was open, and where it started.
    if isinstance(exc, yaml.scanner.ScannerError) and exc.context and exc.context_mark:
        line, col = _pos(exc.context_mark)
        message += f" ({exc.context} at line {line}, column {col})"
    return YamlProblem(_pos(mark), message)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


class _Converter:
    """Turns a composed node graph into dicts/lists/scalars, counting nodes as it goes."""

    def __init__(self, loader: _Loader | _FastLoader, max_nodes: int) -> None:
        self.loader = loader
        self.max_nodes = max_nodes
        self.count = 0
        self.open: set[int] = (
            set()
        )  # ids of the nodes being converted: a cycle means a recursive alias
        self.doc = YamlDocument(data=None, start=(1, 1))

    def document(self, node: yaml.Node) -> YamlDocument:
        self.doc.start = _pos(node.start_mark)
        self.doc.data = self.convert(node, ())
        return self.doc

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        self.count += 1
        if self.count > self.max_nodes:
            # Aliases share nodes, so a small file can describe an exponentially large document.
            raise _Refused(
                _pos(node.start_mark),
                f"document too large: more than {self.max_nodes} YAML nodes after expanding "
                "aliases; refused",
            )
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if node.tag not in (_MAP_TAG, _SEQ_TAG):  # e.g. !!python/object/apply on a sequence
            problem = f"could not determine a constructor for the tag '{node.tag}'"
            raise _Refused(_pos(node.start_mark), f"invalid YAML: {problem}")
        if id(node) in self.open or len(loc) > MAX_DEPTH:
            raise _Refused(_pos(node.start_mark), "recursive alias or nesting too deep; refused")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, loc)
            return [self.convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise _Refused(_pos(node.start_mark), f"invalid YAML: {exc.problem}") from exc

    def mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        try:
            self.loader.flatten_mapping(node)  # resolves '<<' merge keys, as SafeLoader does
        except yaml.constructor.ConstructorError as exc:
            raise _Refused(_pos(node.start_mark), f"invalid YAML: {exc.problem}") from exc
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, result)
            self.doc.keys[(*loc, key)] = _pos(key_node.start_mark)
            self.doc.values[(*loc, key)] = _pos(value_node.start_mark)
            result[key] = self.convert(value_node, (*loc, key))
        return result

    def key(self, node: yaml.Node, seen: dict[Any, Any]) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise _Refused(_pos(node.start_mark), "mapping keys must be plain scalars")
        key = self.scalar(node)
        if key in seen:
            raise _Refused(_pos(node.start_mark), f"duplicate key '{key}'")
        return key
