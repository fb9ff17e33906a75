"""Dataset sources and templates, response formats and output tables: manifest -> declarations.

Called by ``batchops.manifest.build`` for ``Dataset.spec.source`` + ``spec.template`` and for a
job's ``spec.responseFormat`` and ``spec.output.table``. Paths are checked like every other
manifest path (confined to the root); template files are read here so that the renderer gets
text and the place of its first line, and a template problem can point into the manifest or the
template file. Rendering itself is ``batchops.sources``' job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchops.layout import errors_path
from batchops.manifest import paths as P
from batchops.manifest.desired import Source, SourceDecl, TableDecl, TemplatePart

if TYPE_CHECKING:  # the specs may also be ``stored.Node``s read back from the manifest cache
    from batchops.manifest.doc import Loc
    from batchops.manifest.loader import Parsed
    from batchops.manifest.models import ResponseFormatSpec, SourceSpec, TableSpec, TemplateSpec

TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
TABLE_SUFFIXES = {"csv": ".csv", "parquet": ".parquet", "jsonl": ".jsonl"}
MAX_TEMPLATE_BYTES = 1 << 20
MAX_SCHEMA_VERDICTS = 1_000  # digests of valid schemas a manifest cache keeps (oldest dropped)

# Digests of JSON Schemas already found valid, handed in by the loader from its manifest cache
# (``schema_verdicts``): a warm load checks an unchanged responseFormat without importing
# jsonschema (~50 ms of a `plan`'s start-up). None: no cache, check every schema.
_VALID_SCHEMAS: ContextVar[dict[str, None] | None] = ContextVar("valid_schemas", default=None)


class Problem(Exception):
    """A problem at one place of the manifest: ``loc`` (a value) and a message."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc


def source_decl(p: Parsed, source: SourceSpec, template: TemplateSpec, root: Path) -> SourceDecl:
    loc = ("spec", "source", "path")
    assert source.path is not None
    try:
        path = P.confine(source.path, p.file.parent, root)
        files, fmt = _table_files(path, source.format, root)
    except P.PathProblem as exc:
        raise Problem(loc, str(exc)) from exc
    parts, template_files = _parts(p, template, root)
    where_pos = _text_pos(p, ("spec", "source", "where"))
    id_pos = p.doc.values.get(("spec", "source", "idColumn"))
    return SourceDecl(
        path=P.display(path, root),
        files=files,
        format=fmt,
        parts=parts,
        id_column=source.id_column,
        where=source.where,
        id_origin=Source(p.source.path, *id_pos) if id_pos else None,
        where_origin=Source(p.source.path, *where_pos) if where_pos else None,
        limit=source.limit,
        template_files=template_files,
    )


def chain_decl(p: Parsed, source: SourceSpec, template: TemplateSpec, root: Path) -> SourceDecl:
    """A dataset rendered from a job's results: the table (``batchops.sources.chain``) is a
    JSONL of records keyed by the upstream ``custom_id``, built once the results are verified."""
    assert source.job is not None
    parts, template_files = _parts(p, template, root)
    where_pos = _text_pos(p, ("spec", "source", "where"))
    return SourceDecl(
        path=f"job:{source.job}",
        files=(),
        format="jsonl",
        parts=parts,
        id_column="custom_id",
        where=source.where,
        limit=source.limit,
        template_files=template_files,
        where_origin=Source(p.source.path, *where_pos) if where_pos else None,
        upstream=(source.job,),
        combine=source.combine,
    )


def _table_files(path: Path, fmt: str | None, root: Path) -> tuple[tuple[Path, ...], str]:
    if not path.exists():
        raise P.PathProblem(f"source path '{P.display(path, root)}' does not exist")
    if path.is_dir():
        found = (f for f in path.iterdir() if f.suffix in TABLE_FORMATS and f.is_file())
        files = tuple(sorted(found))
        if fmt is not None:
            files = tuple(f for f in files if TABLE_FORMATS[f.suffix] == fmt)
        kinds = {TABLE_FORMATS[f.suffix] for f in files}
        if not files:
            raise P.PathProblem(f"source folder '{P.display(path, root)}' has no table files")
        if len(kinds) > 1:
            shown = ", ".join(sorted(kinds))
            raise P.PathProblem(f"source folder mixes formats ({shown}); set source.format")
        for shard in files:
            if not P.inside(shard.resolve(), root):
                shown = P.display(shard, root)
                raise P.PathProblem(f"shard '{shown}' is a symlink outside the root")
        return files, kinds.pop()
    detected = fmt or TABLE_FORMATS.get(path.suffix)
    if detected is None:
        known = ", ".join(TABLE_FORMATS)
        raise P.PathProblem(f"cannot tell the format of '{path.name}' ({known}); set source.format")
    return (path,), detected


def _parts(
    p: Parsed, template: TemplateSpec, root: Path
) -> tuple[tuple[TemplatePart, ...], tuple[Path, ...]]:
    base: Loc = ("spec", "template")
    if template.messages is None:
        part = _part(
            p,
            template.prompt,
            template.prompt_file,
            (*base, "prompt"),
            (*base, "promptFile"),
            None,
            root,
        )
        return (part,), _files((part,), p, root)
    parts = tuple(
        _part(
            p,
            m.content,
            m.content_file,
            (*base, "messages", i, "content"),
            (*base, "messages", i, "contentFile"),
            m.role,
            root,
        )
        for i, m in enumerate(template.messages)
    )
    return parts, _files(parts, p, root)


def _files(parts: tuple[TemplatePart, ...], p: Parsed, root: Path) -> tuple[Path, ...]:
    shown = {part.origin.path for part in parts} - {p.source.path}
    return tuple(sorted(root / path for path in shown))


def _part(
    p: Parsed,
    text: str | None,
    file: str | None,
    text_loc: Loc,
    file_loc: Loc,
    role: str | None,
    root: Path,
) -> TemplatePart:
    if text is not None:
        line, col = p.doc.values.get(text_loc, (p.source.line, p.source.col))
        block, line, col = _block_start(p.file, line, col)
        return TemplatePart(text, Source(p.source.path, line, col), role, block)
    assert file is not None  # the model requires one of the two
    try:
        path = P.confine(file, p.file.parent, root)
        body = _read_template(path, root)
    except P.PathProblem as exc:
        raise Problem(file_loc, str(exc)) from exc
    # Template files are shown relative to the root; the renderer opens them by that path.
    return TemplatePart(body, Source(P.display(path, root), 1, 1), role, block=False)


def _read_template(path: Path, root: Path) -> str:
    try:
        if path.stat().st_size > MAX_TEMPLATE_BYTES:
            raise P.PathProblem(f"template file '{P.display(path, root)}' is over 1 MiB")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise P.PathProblem(f"template file '{P.display(path, root)}' does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise P.PathProblem(f"cannot read template file '{P.display(path, root)}': {exc}") from exc


def _text_pos(p: Parsed, loc: Loc) -> tuple[int, int] | None:
    """Where a scalar's text starts (after its quote, if quoted); None when it is not there."""
    pos = p.doc.values.get(loc)
    return None if pos is None else _block_start(p.file, *pos)[1:]


def _block_start(file: Path, line: int, col: int) -> tuple[bool, int, int]:
    """A block scalar (``|`` or ``>``) starts on the next line, at its indentation: template line
    n is then manifest line ``line + n``. A quoted scalar's text starts after its quote; a plain
    one where its value does."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False, line, col
    start = lines[line - 1][col - 1 : col] if line <= len(lines) else ""
    if start in ('"', "'"):  # a quoted scalar: its text starts after the quote
        return False, line, col + 1
    if start not in ("|", ">"):
        return False, line, col
    following = [text for text in lines[line:] if text.strip()]
    indent = len(following[0]) - len(following[0].lstrip(" ")) if following else 0
    return True, line, indent + 1


def response_schema(p: Parsed, spec: ResponseFormatSpec, root: Path) -> dict[str, Any]:
    if spec.schema_ is not None:
        schema = spec.schema_
    else:
        assert spec.schema_file is not None
        loc = ("spec", "responseFormat", "schemaFile")
        try:
            schema = _load_schema(P.confine(spec.schema_file, p.file.parent, root), root)
        except P.PathProblem as exc:
            raise Problem(loc, str(exc)) from exc
    _check_schema(schema)
    return schema


def _load_schema(path: Path, root: Path) -> dict[str, Any]:
    import yaml  # lazily: a warm load of manifests without schema files loads no YAML library

    text = _read_template(path, root)
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise P.PathProblem(f"schema file '{P.display(path, root)}' is not valid: {exc}") from exc
    if not isinstance(data, dict):
        raise P.PathProblem(f"schema file '{P.display(path, root)}' must hold a JSON object")
    return data


@contextlib.contextmanager
def schema_verdicts(known: dict[str, None] | None) -> Iterator[None]:
    """Within the block, ``known`` (digests of valid schemas, oldest first) answers for the
    schemas it holds, and learns the ones found valid. Only valid verdicts are kept: an invalid
    schema is checked, and reported with jsonschema's message, on every load."""
    token = _VALID_SCHEMAS.set(known)
    try:
        yield
    finally:
        _VALID_SCHEMAS.reset(token)


def _check_schema(schema: dict[str, Any]) -> None:
    known = _VALID_SCHEMAS.get()
    digest = schema_digest(schema) if known is not None else None
    if digest is not None and known is not None and digest in known:
        return
    import jsonschema  # lazily: only manifests with a new responseFormat pay for it

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        loc = ("spec", "responseFormat", "schema")
        raise Problem(loc, f"not a valid JSON Schema: {exc.message}") from exc
    if digest is not None and known is not None:
        known[digest] = None
        while len(known) > MAX_SCHEMA_VERDICTS:
            del known[next(iter(known))]


def schema_digest(schema: dict[str, Any]) -> str | None:
    """SHA-256 of the schema's canonical JSON; None for a value JSON cannot hold exactly (a YAML
    date, a key that is not a string), which is then checked every time."""
    if not _plain(schema):
        return None
    try:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except ValueError:  # an infinity
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> bool:
    if value is None or type(value) in (str, int, float, bool):
        return bool(value == value)  # not NaN
    if type(value) is list:
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    return False


def table_decl(spec: TableSpec, output: Path, root: Path) -> TableDecl:
    default = output.with_name(f"{output.stem}.table{TABLE_SUFFIXES[spec.format]}")
    try:
        path = P.output_file(spec.path, root) if spec.path else default
    except P.PathProblem as exc:
        raise Problem(("spec", "output", "table", "path"), str(exc)) from exc
    if path == output:
        raise Problem(("spec", "output", "table", "path"), "the table would overwrite the results")
    if path == errors_path(output):
        message = "the table would overwrite the results' errors file"
        raise Problem(("spec", "output", "table", "path"), message)
    columns = tuple(spec.columns) if spec.columns is not None else None
    return TableDecl(path=path, format=spec.format, columns=columns)
