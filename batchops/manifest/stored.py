"""The manifest cache on disk: validated documents kept by file stat, across commands.

``batchops validate``, ``plan``, ``apply``, ``status`` and ``describe`` hand a ``StoredManifests``
to the loader (``load_partial(..., cache=...)``, ``load_project(..., cache=...)``). A manifest file
whose stat key (device, inode, size, mtime, ctime; see ``cache.py``) is unchanged since a
command validated it is not read, parsed or validated again: its documents come back from
``.batchops/cache/manifests.json`` as ``Node``s, which hold the validated models' fields, so a
warm command imports neither pydantic, the manifest models nor a YAML library (issue 17's start-up
budget). Everything that depends on other files (dataset and output paths, templates, schema
files, names across files) is still checked on every load by ``build``, from these documents.
The file also keeps the digests of the responseFormat schemas found valid (``schemas``; see
``templated.schema_verdicts``), so a warm load does not import jsonschema to check them again.

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
import functools
import importlib.util
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import batchops
from batchops.config import STATE_DIR, ensure_state_dir_above
from batchops.errors import Diagnostic
from batchops.gcpause import gc_paused
from batchops.manifest.cache import RACY_NS, ManifestCache, StatKey, _Entry
from batchops.manifest.desired import Source
from batchops.manifest.doc import Loc, Pos, YamlDocument
from batchops.private import private_dir, write_atomic_text

if TYPE_CHECKING:
    from batchops.manifest.loader import Parsed, Unchecked

CACHE_FILE = Path(STATE_DIR, "cache", "manifests.json")
FORMAT = 2
# Reading a document back costs about what parsing and validating it does (libyaml and
# pydantic-core are compiled); what the cache saves is importing them, a fixed ~100 ms. Past a
# few thousand documents decoding costs more than that, so larger projects keep no cache file.
MAX_DOCUMENTS = 2_000
_PACKAGE = Path(__file__).resolve().parents[1]
# The code whose answer a cached document is: parsing, validation and the values models import.
_CODE = (
    "manifest",
    "config.py",
    "jsonvalues.py",
    "providers/catalog.py",
    "providers/fireworks/wire.py",
    "providers/fireworks/names.py",
)


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
            other._model,
            other._fields,
        )

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
    writes the file when a load read anything new, and removes it when the project holds more
    than ``MAX_DOCUMENTS`` documents."""

    def __init__(self, root: Path, *, racy_ns: int = RACY_NS) -> None:
        super().__init__(racy_ns=racy_ns)
        self.root = root.resolve()
        self.path = self.root / CACHE_FILE
        with gc_paused():  # 10,000 jobs: a few hundred thousand objects that make no cycles
            self._raw, self._models, self.schemas = _read(self.path)
        self._schemas_read = list(self.schemas)
        self._new: dict[str, tuple[StatKey, list[Parsed], list[Diagnostic], Sequence[Unchecked]]]
        self._new = {}  # encoded when written: a project too big to keep never pays for it
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
        if not isinstance(raw, dict) or raw.get("stat") != list(key):
            return key, None
        try:
            with gc_paused():
                entry = _decode_entry(file, key, raw, self._models)
        except (KeyError, TypeError, ValueError, IndexError):  # a damaged entry: read the file
            return key, None
        self._entries[file] = entry
        return key, entry

    def put(
        self,
        file: Path,
        key: StatKey | None,
        parsed: list[Parsed],
        diags: list[Diagnostic],
        unchecked: Sequence[Unchecked] = (),
    ) -> None:
        super().put(file, key, parsed, diags, unchecked)
        self._dirty = True
        self._raw.pop(str(file), None)
        self._new.pop(str(file), None)
        if key is not None:
            self._new[str(file)] = (key, parsed, diags, unchecked)

    def finish(self) -> None:
        """Write the file if this load read anything; a cache that cannot be written (a
        read-only checkout) is simply not kept."""
        if not self._dirty and list(self.schemas) == self._schemas_read:
            return
        self._dirty, self._schemas_read = False, list(self.schemas)
        kept = sum(len(e["parsed"]) for e in self._raw.values() if _is_entry(e))
        if kept + sum(len(new[1]) for new in self._new.values()) > MAX_DOCUMENTS:
            self._raw, self._new = {}, {}
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            return
        for file, (key, parsed, diags, unchecked) in self._new.items():
            with contextlib.suppress(Uncacheable):  # then validated again next time
                self._raw[file] = _encode_entry(key, parsed, diags, unchecked, self._models)
        self._new = {}
        self._raw = {f: e for f, e in self._raw.items() if Path(f).exists()}
        body = {
            "format": FORMAT,
            "code": code_stamp(),
            "models": self._models,
            "files": self._raw,
            "schemas": list(self.schemas),
        }
        with contextlib.suppress(OSError), gc_paused():
            ensure_state_dir_above(self.path.parent)
            private_dir(self.path.parent, root=self.root)
            write_atomic_text(
                self.path, json.dumps(body, separators=(",", ":")), prefix=".manifests-"
            )


@functools.cache  # the code does not change under a running command: stat it once
def code_stamp() -> str:
    """batchops' and Python's versions, and the size and mtime of every file whose code decides
    what a manifest validates to (pydantic's included)."""
    files = [p for part in _CODE for p in _files(_PACKAGE / part)]
    for name in ("pydantic", "pydantic_core", "yaml", "jsonschema"):
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


def _read(path: Path) -> tuple[dict[str, Any], Models, dict[str, None]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}, {}, {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}, {}, {}
    files, models = data.get("files"), data.get("models")
    if not isinstance(files, dict) or not isinstance(models, dict):
        return {}, {}, {}
    if data.get("code") != code_stamp():  # batchops, Python or pydantic changed: start afresh
        return {}, {}, {}
    if not all(_is_model(m) for m in models.values()):  # damaged: rebuilt from the manifests
        return {}, {}, {}
    schemas = data.get("schemas")
    valid = schemas if isinstance(schemas, list) and all(type(d) is str for d in schemas) else []
    return {f: e for f, e in files.items() if _is_entry(e)}, models, dict.fromkeys(valid)


def _is_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("parsed"), list)


def _is_model(model: Any) -> bool:
    """``[field names, {field: alias}]``, as ``_model`` writes it."""
    return (
        isinstance(model, list)
        and len(model) == 2
        and isinstance(model[0], list)
        and all(isinstance(f, str) for f in model[0])
        and isinstance(model[1], dict)
    )


# -- encoding -----------------------------------------------------------------------------------
#
# Compact, as 10,000 jobs make one entry each: a model is ``[class, value, ...]`` (its fields in
# the order the header's ``models[class]`` lists them), a dict ``{"d": {...}}``, a list
# ``{"l": [...]}``; scalars are themselves. The raw YAML data of a document is not kept: only
# the loader reads it (to validate), never the builder.

Models = dict[str, list[Any]]  # class name -> [field names, aliases by field]


def _encode_entry(
    key: StatKey,
    parsed: list[Parsed],
    diags: list[Diagnostic],
    unchecked: Sequence[Unchecked],
    models: Models,
) -> dict[str, Any]:
    return {
        "stat": list(key),
        "shown": parsed[0].source.path if parsed else "",
        "parsed": [_encode_parsed(p, models) for p in parsed],
        "diags": [_diag(d) for d in diags],
        "unchecked": [[u.kind, u.name, u.input_dataset, _diag(u.at)] for u in unchecked],
    }


def _encode_parsed(p: Parsed, models: Models) -> list[Any]:
    doc = p.doc
    return [
        _model(p.manifest, models),
        p.source.line,
        p.source.col,
        *doc.start,
        _positions(doc.keys),
        _positions(doc.values),
    ]


def _model(value: Any, models: Models) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, list):
        return {"l": [_model(v, models) for v in value]}
    if isinstance(value, dict):
        if not all(type(k) is str for k in value):
            raise Uncacheable("a mapping key that is not a string")
        return {"d": {k: _model(v, models) for k, v in value.items()}}
    fields = getattr(type(value), "model_fields", None)
    if not isinstance(fields, dict):
        raise Uncacheable(type(value).__name__)  # a tuple, a date, a Node: not kept
    name = type(value).__name__
    if name not in models:
        aliases = {f: i.serialization_alias or i.alias or f for f, i in fields.items()}
        models[name] = [list(fields), aliases]
    elif models[name][0] != list(fields):
        raise Uncacheable(f"two models named {name}")
    return [name, *(_model(getattr(value, f), models) for f in fields)]


def _positions(positions: dict[Loc, Pos]) -> list[Any]:
    return [x for loc, pos in positions.items() for x in (list(loc), *pos)]


def _diag(d: Diagnostic) -> list[Any]:
    return [d.path, d.line, d.col, d.message]


# -- decoding -----------------------------------------------------------------------------------


def _decode_entry(file: Path, key: StatKey, raw: dict[str, Any], models: Models) -> _Entry:
    from batchops.manifest.loader import Parsed, Unchecked

    shown = raw["shown"]
    parsed = tuple(
        Parsed(
            manifest=_node(m, models),
            file=file,
            source=Source(shown, line, col),
            doc=YamlDocument(None, (start_line, start_col), _loc_map(keys), _loc_map(values)),
        )
        for m, line, col, start_line, start_col, keys, values in raw["parsed"]
    )
    diags = tuple(Diagnostic(*d) for d in raw["diags"])
    unchecked = tuple(Unchecked(k, n, i, Diagnostic(*at)) for k, n, i, at in raw["unchecked"])
    return _Entry(key, parsed, diags, unchecked)  # the manifests are Nodes, duck-typed


def _node(value: Any, models: Models) -> Any:
    if isinstance(value, list):
        name, *values = value
        names, aliases = models[name]
        fields = {f: _node(v, models) for f, v in zip(names, values, strict=True)}
        return Node(name, fields, aliases)
    if isinstance(value, dict):
        if "d" in value:
            return {k: _node(v, models) for k, v in value["d"].items()}
        return [_node(v, models) for v in value["l"]]
    return value


def _loc_map(flat: list[Any]) -> dict[Loc, Pos]:
    it = iter(flat)
    return {tuple(loc): (line, col) for loc, line, col in zip(it, it, it, strict=True)}
