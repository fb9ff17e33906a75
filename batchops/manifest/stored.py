"""The manifest cache on disk: validated documents kept by file stat, across commands.

``batchops validate``, ``plan``, ``apply``, ``status`` and ``describe`` hand a ``StoredManifests``
to the loader (``load_partial(..., cache=...)``, ``load_project(..., cache=...)``). A manifest file
whose stat key (device, inode, size, mtime, ctime; see ``cache.py``) is unchanged since a
command validated it is not read, parsed or validated again: its documents come back from
``.batchops/cache/manifests.json`` as ``Node``s, which hold the validated models' fields, so a
warm command imports neither pydantic, the manifest models nor a YAML library (issue 17's start-up
budget). Everything that depends on other files (dataset and output paths, templates, schema
files, names across files) is still checked on every load by ``build``, from these documents.

The file is JSON (never pickle: a checkout could carry a forged ``.batchops/``, and reading it
must not run code); the stat keys of a fresh checkout never match a forged entry. It is used only
when its ``code`` stamp matches: batchops' version, Python's, and the size and mtime of the code
that parses and validates manifests (and of the installed pydantic), so an upgrade or an edited
model re-validates everything. A missing, unreadable or foreign file is an empty cache; a
document holding a value JSON cannot keep exactly (a YAML date, a non-string key) leaves its file
out of the cache, to be validated again each time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import batchops
from batchops.config import STATE_DIR, ensure_state_dir_above
from batchops.errors import Diagnostic
from batchops.manifest.cache import RACY_NS, ManifestCache, StatKey, _Entry
from batchops.manifest.desired import Source
from batchops.manifest.doc import Loc, Pos, YamlDocument
from batchops.private import private_dir, write_atomic_text

if TYPE_CHECKING:
    from batchops.manifest.loader import Parsed, Unchecked

CACHE_FILE = Path(STATE_DIR, "cache", "manifests.json")
FORMAT = 1
_PACKAGE = Path(__file__).resolve().parents[1]
# The code whose answer a cached document is: parsing, validation and the values models import.
_CODE = ("manifest", "config.py", "jsonvalues.py", "providers/catalog.py",
         "providers/fireworks/wire.py")  # fmt: skip


class Uncacheable(Exception):
    """A value JSON would not give back exactly."""


class Node:
    """A validated manifest model read back from the cache: its fields are attributes, and
    ``model_dump`` answers as the model's would (nested models as dicts, ``by_alias``,
    ``exclude_none``). It duck-types the model for ``build`` and ``project``, which tell the
    documents apart by ``kind``, never by class."""

    __slots__ = ("_aliases", "_fields", "_model")

    def __init__(self, model: str, fields: dict[str, Any], aliases: dict[str, str]) -> None:
        self._model, self._fields, self._aliases = model, fields, aliases

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(f"{self._model} (cached) has no field {name!r}") from None

    def __repr__(self) -> str:
        return f"Node({self._model}, {self._fields!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and (self._model, self._fields) == (
            other._model, other._fields)  # fmt: skip

    __hash__ = None  # type: ignore[assignment]  # like the mutable dicts it holds

    def model_dump(self, *, by_alias: bool = False, exclude_none: bool = False) -> dict[str, Any]:
        out = {}
        for name, value in self._fields.items():
            if exclude_none and value is None:
                continue
            key = self._aliases.get(name, name) if by_alias else name
            out[key] = _dumped(value, by_alias, exclude_none)
        return out


def _dumped(value: Any, by_alias: bool, exclude_none: bool) -> Any:
    if isinstance(value, Node):
        return value.model_dump(by_alias=by_alias, exclude_none=exclude_none)
    if isinstance(value, list):
        return [_dumped(v, by_alias, exclude_none) for v in value]
    if isinstance(value, dict):
        return {k: _dumped(v, by_alias, exclude_none) for k, v in value.items()}
    return value


class StoredManifests(ManifestCache):
    """A ``ManifestCache`` read from and written to ``.batchops/cache/manifests.json`` under
    ``root``. Entries are decoded when a file asks for them; ``finish`` (called by the loader)
    writes the file when a load read anything new."""

    def __init__(self, root: Path, *, racy_ns: int = RACY_NS) -> None:
        super().__init__(racy_ns=racy_ns)
        self.root = root.resolve()
        self.path = self.root / CACHE_FILE
        self._raw, self._aliases = _read(self.path)
        self._dirty = False

    def start(self, files: Iterable[Path]) -> None:
        """A new load: unlike the watcher's cache, other files' entries are kept (the project
        file and the manifests share one cache); files that are gone are dropped on writing."""
        self.reads = []

    def get(self, file: Path) -> tuple[StatKey | None, _Entry | None]:
        key, entry = super().get(file)
        if entry is not None or key is None:
            return key, entry
        raw = self._raw.get(str(file))
        if raw is None or tuple(raw.get("stat", ())) != key:
            return key, None
        try:
            entry = _decode_entry(key, raw, self._aliases)
        except (KeyError, TypeError, ValueError, IndexError):  # a damaged entry: read the file
            return key, None
        self._entries[file] = entry
        return key, entry

    def put(self, file: Path, key: StatKey | None, parsed: list[Parsed],
            diags: list[Diagnostic], unchecked: Sequence[Unchecked] = ()) -> None:  # fmt: skip
        super().put(file, key, parsed, diags, unchecked)
        self._dirty = True
        self._raw.pop(str(file), None)
        if key is None:
            return
        with contextlib.suppress(Uncacheable):  # then validated again next time
            self._raw[str(file)] = _encode_entry(key, parsed, diags, unchecked, self._aliases)

    def finish(self) -> None:
        """Write the file if this load read anything; a cache that cannot be written (a
        read-only checkout) is simply not kept."""
        if not self._dirty:
            return
        self._raw = {f: e for f, e in self._raw.items() if Path(f).exists()}
        body = {"format": FORMAT, "code": code_stamp(), "aliases": self._aliases,
                "files": self._raw}  # fmt: skip
        with contextlib.suppress(OSError):
            ensure_state_dir_above(self.path.parent)
            private_dir(self.path.parent, root=self.root)
            write_atomic_text(self.path, json.dumps(body, separators=(",", ":")),
                              prefix=".manifests-")  # fmt: skip
        self._dirty = False


def code_stamp() -> str:
    """batchops' and Python's versions, and the size and mtime of every file whose code decides
    what a manifest validates to (pydantic's included)."""
    files = [p for part in _CODE for p in _files(_PACKAGE / part)]
    for name in ("pydantic", "pydantic_core", "yaml"):
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.origin is not None:
                files.append(Path(spec.origin))
    stamps = []
    for file in files:
        try:
            st = file.stat()
        except OSError:
            continue
        stamps.append(f"{file.name}:{st.st_size}:{st.st_mtime_ns}")
    version = ".".join(map(str, sys.version_info[:3]))
    return f"{batchops.__version__}|{version}|{'|'.join(stamps)}"


def _files(path: Path) -> list[Path]:
    return sorted(path.glob("*.py")) if path.is_dir() else [path]


def _read(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}, {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}, {}
    files, aliases = data.get("files"), data.get("aliases")
    if not isinstance(files, dict) or not isinstance(aliases, dict):
        return {}, {}
    if data.get("code") != code_stamp():  # batchops, Python or pydantic changed: start afresh
        return {}, {}
    return files, aliases


# -- encoding -----------------------------------------------------------------------------------


def _encode_entry(key: StatKey, parsed: list[Parsed], diags: list[Diagnostic],
                  unchecked: Sequence[Unchecked], aliases: dict[str, dict[str, str]],
                  ) -> dict[str, Any]:  # fmt: skip
    return {
        "stat": list(key),
        "parsed": [_encode_parsed(p, aliases) for p in parsed],
        "diags": [_diag(d) for d in diags],
        "unchecked": [[u.kind, u.name, u.input_dataset, _diag(u.at)] for u in unchecked],
    }


def _encode_parsed(p: Parsed, aliases: dict[str, dict[str, str]]) -> dict[str, Any]:
    doc = p.doc
    return {
        "manifest": _model(p.manifest, aliases),
        "file": str(p.file),
        "source": [p.source.path, p.source.line, p.source.col],
        "data": _plain(doc.data),
        "start": list(doc.start),
        "keys": _positions(doc.keys),
        "values": _positions(doc.values),
    }


def _model(value: Any, aliases: dict[str, dict[str, str]]) -> Any:
    """A model as ``{"m": class, "f": fields}``, a dict as ``{"d": ...}``; lists and scalars as
    themselves."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, list):
        return [_model(v, aliases) for v in value]
    if isinstance(value, dict):
        _string_keys(value)
        return {"d": {k: _model(v, aliases) for k, v in value.items()}}
    fields = getattr(type(value), "model_fields", None)
    if not isinstance(fields, dict):
        raise Uncacheable(type(value).__name__)  # a tuple, a date, a Node: not kept
    name = type(value).__name__
    aliases.setdefault(name, {f: i.serialization_alias or i.alias or f for f, i in fields.items()})
    return {"m": name, "f": {f: _model(getattr(value, f), aliases) for f in fields}}


def _plain(value: Any) -> Any:
    """The document's raw data, checked to be what JSON gives back unchanged."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        _string_keys(value)
        return {k: _plain(v) for k, v in value.items()}
    raise Uncacheable(type(value).__name__)


def _string_keys(value: dict[Any, Any]) -> None:
    if not all(type(k) is str for k in value):
        raise Uncacheable("a mapping key that is not a string")


def _positions(positions: dict[Loc, Pos]) -> list[list[Any]]:
    return [[list(loc), *pos] for loc, pos in positions.items()]


def _diag(d: Diagnostic) -> list[Any]:
    return [d.path, d.line, d.col, d.message]


# -- decoding -----------------------------------------------------------------------------------


def _decode_entry(key: StatKey, raw: dict[str, Any],
                  aliases: dict[str, dict[str, str]]) -> _Entry:  # fmt: skip
    from batchops.manifest.loader import Parsed, Unchecked

    parsed = tuple(
        Parsed(
            manifest=_node(p["manifest"], aliases),
            file=Path(p["file"]),
            source=Source(*p["source"]),
            doc=YamlDocument(
                data=p["data"],
                start=_pos(p["start"]),
                keys=_loc_map(p["keys"]),
                values=_loc_map(p["values"]),
            ),
        )
        for p in raw["parsed"]
    )
    diags = tuple(Diagnostic(*d) for d in raw["diags"])
    unchecked = tuple(Unchecked(k, n, i, Diagnostic(*at)) for k, n, i, at in raw["unchecked"])
    return _Entry(key, parsed, diags, unchecked)  # the manifests are Nodes, duck-typed


def _node(value: Any, aliases: dict[str, dict[str, str]]) -> Any:
    if isinstance(value, list):
        return [_node(v, aliases) for v in value]
    if not isinstance(value, dict):
        return value
    if "d" in value:
        return {k: _node(v, aliases) for k, v in value["d"].items()}
    model = value["m"]
    fields = {k: _node(v, aliases) for k, v in value["f"].items()}
    return Node(model, fields, aliases.get(model, {}))


def _pos(value: list[int]) -> Pos:
    line, col = value
    return (int(line), int(col))


def _loc_map(rows: list[list[Any]]) -> dict[Loc, Pos]:
    return {tuple(loc): (line, col) for loc, line, col in rows}
