"""Tables + templates -> the rendered JSONL artifact of a dataset, content-addressed and cached.

Called (through ``render_all``) by the reconciler's ``load_inputs``, by ``batchops validate`` and
by ``batchops results``, before datasets are validated: a rendered dataset then goes through
exactly the validation and upload path of a hand-written one.

An artifact lives in ``.batchops/rendered/<dataset>/<key>/``: ``rows.jsonl`` (what is uploaded)
and ``inputs.jsonl`` (each row's source columns by custom_id, for joining results to their
inputs). ``key`` hashes the renderer's version, the template texts, the source settings and the
sha256 of each table file; the files' hashes come from a stat cache (size, mtime, inode), so
an unchanged dataset costs a ``stat`` per file and renders nothing. Other keys of the dataset are
removed once a new artifact is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import orjson

from batchops.config import STATE_DIR
from batchops.errors import Diagnostic, InvalidInputError
from batchops.sources import tables
from batchops.sources.decls import PartLike, SourceLike
from batchops.stamps import file_sha256

if TYPE_CHECKING:
    from batchops.sources import templates as T

RENDERER_VERSION = "1"  # bump when the bytes rendered from the same inputs change
RENDERED_DIR = Path(STATE_DIR, "rendered")
CACHE_FILE = Path(STATE_DIR, "cache", "sources.json")
ROWS_FILE, INPUTS_FILE = "rows.jsonl", "inputs.jsonl"
MAX_SHOWN = 20  # problems shown per dataset; the rest are counted
_FLUSH = 4096  # rendered rows written at a time
ID_HASH_CHARS = 20


class RenderLike(Protocol):
    """What we need of ``batchops.manifest.desired.SourceDecl``."""

    @property
    def path(self) -> str: ...
    @property
    def files(self) -> tuple[Path, ...]: ...
    @property
    def format(self) -> str: ...
    @property
    def parts(self) -> Sequence[PartLike]: ...
    @property
    def id_column(self) -> str | None: ...
    @property
    def id_origin(self) -> SourceLike | None: ...
    @property
    def where(self) -> str | None: ...
    @property
    def where_origin(self) -> SourceLike | None: ...
    @property
    def limit(self) -> int | None: ...
    @property
    def upstream(self) -> tuple[str, ...]: ...


class DatasetLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def source(self) -> SourceLike: ...
    @property
    def render(self) -> RenderLike | None: ...


class DesiredLike(Protocol):
    @property
    def datasets(self) -> Sequence[DatasetLike]: ...


@dataclass(frozen=True)
class Artifact:
    rows: Path  # the JSONL that is validated and uploaded
    inputs: Path  # {"custom_id", "row"} per rendered row, in the same order
    rendered: bool  # False: reused from an earlier run


def render_all(
    desired: DesiredLike, *, root: Path, problems: list[Diagnostic] | None = None
) -> dict[str, Path]:
    """Every rendered dataset's artifact by name; one InvalidInputError with every problem, or,
    given ``problems``, the problems appended there and the datasets that rendered returned."""
    cache = SourceCache(root / CACHE_FILE)
    files: dict[str, Path] = {}
    diags: list[Diagnostic] = []
    for decl in desired.datasets:
        if decl.render is None or (decl.render.upstream and not decl.render.files):
            continue  # a pipeline stage: rendered from its upstream's results (batchops.chains)
        try:
            files[decl.name] = render_dataset(decl, root=root, cache=cache).rows
        except InvalidInputError as exc:
            diags.extend(exc.diagnostics)
    cache.save()
    if problems is not None:
        problems.extend(diags)
    elif diags:
        raise InvalidInputError(diags)
    return files


def render_dataset(decl: DatasetLike, *, root: Path, cache: SourceCache | None = None) -> Artifact:
    render = decl.render
    assert render is not None
    cache = cache if cache is not None else SourceCache(root / CACHE_FILE)
    folder = root / RENDERED_DIR / decl.name / artifact_key(render, root, cache)
    if (folder / ROWS_FILE).is_file():
        return Artifact(folder / ROWS_FILE, folder / INPUTS_FILE, rendered=False)
    _Renderer(decl, render, root).write(folder)
    for other in folder.parent.iterdir():  # older keys: nothing refers to them any more
        if other != folder:
            shutil.rmtree(other, ignore_errors=True)
    return Artifact(folder / ROWS_FILE, folder / INPUTS_FILE, rendered=True)


def relocate(diags: Sequence[Diagnostic], desired: DesiredLike) -> list[Diagnostic]:
    """Problems found in a rendered artifact, pointed at the dataset's manifest instead: nobody
    edits ``.batchops/``; they edit the template or the table."""
    prefix = RENDERED_DIR.as_posix() + "/"
    by_name = {d.name: d for d in desired.datasets if d.render is not None}
    moved = []
    for diag in diags:
        name = diag.path[len(prefix) :].split("/", 1)[0] if diag.path.startswith(prefix) else ""
        decl = by_name.get(name)
        if decl is None:
            moved.append(diag)
            continue
        at = decl.source
        message = f"dataset '{name}' as rendered (line {diag.line}): {diag.message}"
        moved.append(Diagnostic(at.path, at.line, at.col, message))
    return moved


def inputs_file(dataset_file: Path) -> Path | None:
    """The ``inputs.jsonl`` beside a rendered dataset's rows, or None for a hand-written one."""
    if dataset_file.name != ROWS_FILE or dataset_file.parent.parent.parent.name != "rendered":
        return None
    path = dataset_file.with_name(INPUTS_FILE)
    return path if path.is_file() else None


def artifact_key(render: RenderLike, root: Path, cache: SourceCache) -> str:
    settings = {
        "version": RENDERER_VERSION,
        "format": render.format,
        "id": render.id_column,
        "where": render.where,
        "limit": render.limit,
        "parts": [[p.role, p.text] for p in render.parts],
        "files": [[f.name, cache.sha256(f)] for f in render.files],
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]


# -- the stat cache of table files --------------------------------------------------------------


class SourceCache:
    """path -> (size, mtime_ns, inode, sha256) of table files, as JSON; like git's index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, list[Any]] = self._read()
        self.dirty = False

    def _read(self) -> dict[str, list[Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def sha256(self, file: Path) -> str:
        st = file.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        entry = self.entries.get(str(file))
        if isinstance(entry, list) and entry[:3] == stamp:
            return str(entry[3])
        digest = file_sha256(file)
        self.entries[str(file)] = [*stamp, digest]
        self.dirty = True
        return digest

    def save(self) -> None:
        if not self.dirty:
            return
        self.entries = {k: v for k, v in self.entries.items() if Path(k).exists()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".sources-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.entries, fh)
        Path(tmp).replace(self.path)
        self.dirty = False


# -- rendering ---------------------------------------------------------------------------------


def _line_template(chat: bool, roles: Sequence[str | None]) -> tuple[bytes, int]:
    """A rendered row's bytes with ``%s`` for its custom_id and its texts (each as JSON), and
    how many texts it takes: exactly what orjson writes for ``{"custom_id": .., "body": {..}}``,
    built once instead of a dict per row (bench/render.py: a third of the time per row)."""
    if not chat:
        return b'{"custom_id":%s,"body":{"prompt":%s}}', 1
    heads = [orjson.dumps({"role": role, "content": None})[: -len(b"null}")] for role in roles]
    messages = b",".join(head.replace(b"%", b"%%") + b"%s}" for head in heads)
    return b'{"custom_id":%s,"body":{"messages":[' + messages + b"]}}", len(heads)


class _Problems:
    def __init__(self) -> None:
        self.diags: list[Diagnostic] = []
        self.extra = 0

    def add(self, diag: Diagnostic) -> None:
        if len(self.diags) < MAX_SHOWN:
            self.diags.append(diag)
        else:
            self.extra += 1

    def all(self, origin: SourceLike) -> list[Diagnostic]:
        if not self.extra:
            return self.diags
        more = f"... and {self.extra} more problem{'s' if self.extra > 1 else ''} in this dataset"
        return [*self.diags, Diagnostic(origin.path, origin.line, origin.col, more)]


class _Renderer:
    """One dataset: check the templates against the table's columns, then render every row."""

    def __init__(self, decl: DatasetLike, render: RenderLike, root: Path) -> None:
        from batchops.sources import templates  # Jinja2: only when something is rendered

        self.T = templates
        self.decl, self.spec, self.root = decl, render, root
        self.problems = _Problems()
        self.env = templates.environment()
        self.chat = render.parts[0].role is not None
        self.seen: dict[int, int] = {}  # hash(custom_id) -> file index << 40 | line
        self.count = 0  # rows written
        self.taken = 0  # rows that passed ``where``, well rendered or not (for ``limit``)
        self.check_only = False  # a template failed: rows are checked (keys, cells), not rendered

    def shown(self, file: Path) -> str:
        try:
            return file.relative_to(self.root).as_posix()
        except ValueError:
            return str(file)

    def write(self, folder: Path) -> None:
        compiled, where = self._compile()
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".render-", dir=folder.parent))
        try:
            with (tmp / ROWS_FILE).open("wb") as rows, (tmp / INPUTS_FILE).open("wb") as inputs:
                if compiled is not None:
                    self._rows(compiled, where, rows, inputs)
            if not self.problems.diags and not self.count:
                self._problem(self.decl.source, "the source renders no rows")
            if self.problems.diags:
                raise InvalidInputError(self.problems.all(self.decl.source))
            try:
                tmp.rename(folder)  # atomic; refused when the folder exists and is not empty
            except OSError:
                # Another process (a watch daemon beside an apply) rendered the same key first:
                # same inputs, same bytes; keep its artifact, which readers may already hold.
                if not (folder / ROWS_FILE).is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _problem(self, at: SourceLike, message: str) -> None:
        self.problems.add(Diagnostic(at.path, at.line, at.col, message))

    def _compile(self) -> tuple[list[T.Compiled] | None, Callable[[dict[str, Any]], Any] | None]:
        names = self._columns(self.spec.files[0])
        if names is None:
            return None, None
        diags: list[Diagnostic] = []
        compiled = [self.T.compile_part(self.env, part, names, diags) for part in self.spec.parts]
        where = None
        parts_ok = len(diags)
        if self.spec.where is not None:
            o = self.spec.where_origin or self.decl.source
            at = (o.path, o.line, o.col)
            where = self.T.compile_where(self.env, self.spec.where, names, at, diags)
        column = self.spec.id_column
        id_bad = column is not None and bool(names) and column not in names
        if column is not None and names and column not in names:
            hint = self.T.undefined_message(column, names).split(";", 1)[1]
            origin = self.spec.id_origin or self.decl.source
            self._problem(origin, f"idColumn '{column}' is not a column;{hint}")
        for diag in diags:
            self.problems.add(diag)
        if not self.problems.diags:
            return [c for c in compiled if c is not None], where
        if len(diags) > parts_ok or id_bad or not names:
            return None, None  # rows cannot be selected or keyed: nothing more to say of them
        # Only templates failed: the table's own problems (empty cells the templates use, empty
        # or duplicate keys) are still reported, all at once; nothing is rendered.
        self.check_only = True
        return [
            c or self.T.unrendered(self.env, p, names)
            for c, p in zip(compiled, self.spec.parts, strict=True)
        ], where

    def _columns(self, file: Path) -> list[str] | None:
        try:
            return tables.columns(file, self.spec.format)
        except (tables.TableProblem, OSError, UnicodeDecodeError) as exc:
            line = exc.line if isinstance(exc, tables.TableProblem) else 1
            self.problems.add(Diagnostic(self.shown(file), line, 1, str(exc)))
            return None

    def _rows(
        self,
        compiled: list[T.Compiled],
        where: Callable[[dict[str, Any]], Any] | None,
        rows: IO[bytes],
        inputs: IO[bytes],
    ) -> None:
        """The hot loop (bench/render.py): everything per row is inlined or a C call, and the
        output is written in batches. The rare paths (a problem) call out to methods."""
        used = sorted(set().union(*(c.variables for c in compiled)))
        parts = [(c.render, c.constant, c.part.role) for c in compiled]
        check_only = self.check_only
        combined = None if check_only else self.T.combine(self.env, compiled)
        count = len(compiled)
        template, texts_used = _line_template(self.chat, [c.part.role for c in compiled])
        id_column, limit, seen, dumps = (
            self.spec.id_column,
            self.spec.limit,
            self.seen,
            orjson.dumps,
        )
        out: list[bytes] = []
        side: list[bytes] = []
        for index, file in enumerate(self.spec.files):
            shown = self.shown(file)
            try:
                for line, row in tables.read_rows(file, self.spec.format):
                    if limit is not None and self.taken >= limit:
                        break
                    if where is not None and not self._keep(where, row, shown, line):
                        continue
                    self.taken += 1
                    if not all(map(row.get, used)) and self._empty(row, used, shown, line):
                        continue  # all() also refuses 0 and False: _empty looks closer
                    custom_id = row.get(id_column) if id_column else self._hash_id(row)
                    if custom_id is None or custom_id == "":
                        self._problem_at(shown, line, f"idColumn '{id_column}' is empty")
                        continue
                    custom_id = custom_id if type(custom_id) is str else str(custom_id)
                    here = index << 40 | line
                    if seen.setdefault(hash(custom_id), here) != here:
                        self._duplicate(custom_id, seen[hash(custom_id)], shown, line)
                        continue
                    if check_only:
                        continue
                    try:
                        texts: list[str | None] = []
                        if combined is not None:
                            texts = list(combined(row))
                        if (
                            len(texts) != count
                        ):  # no combined template, or a cell held its separator
                            texts = [r(row) if r is not None else k for r, k, _ in parts]
                    except Exception:  # noqa: BLE001 (a user's template): say which, and where
                        self._render_problem(compiled, row, shown, line)
                        continue
                    if self.problems.diags:
                        continue  # keep checking, but write nothing more
                    cid = dumps(custom_id)
                    out.append(template % (cid, *map(dumps, texts[:texts_used])))
                    side.append(b'{"custom_id":%s,"row":%s}' % (cid, dumps(row, default=str)))
                    if len(out) >= _FLUSH:
                        self._flush(out, side, rows, inputs)
            except tables.TableProblem as exc:
                self.problems.add(Diagnostic(shown, exc.line, 1, str(exc)))
            except OSError as exc:
                self.problems.add(Diagnostic(shown, 1, 1, f"cannot read: {exc.strerror}"))
        self._flush(out, side, rows, inputs)

    def _keep(
        self, where: Callable[[dict[str, Any]], Any], row: dict[str, Any], shown: str, line: int
    ) -> bool:
        try:
            return bool(where(row))
        except Exception as exc:  # noqa: BLE001 (a user's expression): a problem of this row
            self._problem_at(shown, line, f"where: {exc}")
            return False

    def _flush(
        self, out: list[bytes], side: list[bytes], rows: IO[bytes], inputs: IO[bytes]
    ) -> None:
        if out:
            self.count += len(out)
            rows.write(b"\n".join(out) + b"\n")
            inputs.write(b"\n".join(side) + b"\n")
            out.clear()
            side.clear()

    def _problem_at(self, shown: str, line: int, message: str) -> None:
        self.problems.add(Diagnostic(shown, line, 1, message))

    def _empty(self, row: dict[str, Any], used: list[str], shown: str, line: int) -> bool:
        for name in used:
            value = row.get(name)
            if value is None or value == "":
                missing = "is empty" if name in row else "is missing"
                self._problem_at(shown, line, f"column '{name}' {missing}")
                return True
        return False

    def _hash_id(self, row: dict[str, Any]) -> str:
        canonical = orjson.dumps(row, option=orjson.OPT_SORT_KEYS, default=str)
        return hashlib.sha256(canonical).hexdigest()[:ID_HASH_CHARS]

    def _duplicate(self, custom_id: str, first: int, shown: str, line: int) -> None:
        # ``seen`` holds hash(custom_id): 64 bits, so a false match among a million ids has a
        # chance of about 3e-8; in exchange it stores no strings.
        was = f"{self.shown(self.spec.files[first >> 40])}:{first & (1 << 40) - 1}"
        what = "an identical row" if self.spec.id_column is None else "the same key"
        self._problem_at(
            shown, line, f"duplicate custom_id '{custom_id}': {what} is first at {was}"
        )

    def _render_problem(
        self, compiled: list[T.Compiled], row: dict[str, Any], shown: str, line: int
    ) -> None:
        for c in compiled:
            if self._text(c, row, shown, line) is None and c.render is not None:
                return

    def _text(self, c: T.Compiled, row: dict[str, Any], shown: str, line: int) -> str | None:
        if c.render is None:
            return c.constant
        try:
            return c.render(row)
        except Exception as exc:  # noqa: BLE001 (any error of a user's template is a problem)
            where = self.T.at(c.part, self.T.runtime_line(exc, c), "")
            message = f"cannot render: {exc} (template at {where.path}:{where.line})"
            self.problems.add(Diagnostic(shown, line, 1, message))
            return None
