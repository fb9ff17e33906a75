"""Results on disk: merge a job lineage's outputs by custom_id, write atomically, verify, record.

``batchops.apply`` downloads every output dataset of a job's lineage into a temp folder under
``.batchops/`` and calls ``merge_lineage``, which indexes the lines by custom_id in a temporary
SQLite file and copies them out in input order, so memory stays flat whatever the output size.
The planner reads ``local_records`` + ``local_state`` to decide whether a finished job's results are
already on disk and verified: one query for all jobs and a stat per file,
never an API call. The record (``.batchops/results/<job>.json``) is only a cache: deleting it makes
the next pass download again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson

from batchops.config import STATE_DIR, ensure_state_dir
from batchops.errors import BatchopsError
from batchops.identity import runs_of
from batchops.layout import derived_paths, errors_path
from batchops.private import private_file
from batchops.providers import ERRORS_FILE, OUTPUT_FILE
from batchops.scratch import Scratch, short_name, sweep_beside
from batchops.stamps import FileStamp, InputsUsed, stamp_matches

RECORD_VERSION = 1


class ResultsError(BatchopsError):
    """A merged result does not account for every input row (or holds rows the input lacks)."""


# Records are msgspec Structs: a plan of 1,000 finished jobs decodes 1,000 of them, three times
# faster than into dataclasses (bench/plan.py).


class MergeCounts(msgspec.Struct, frozen=True, gc=False):
    expected: int  # input custom_ids (0 when unknown)
    succeeded: int
    failed: int
    missing: int  # input custom_ids with neither a result nor an error
    unexpected: int  # custom_ids in the output that the input does not hold
    # result lines with no readable custom_id (a torn download); counted only when the input is
    # remote-only: a known input finds the rows they lost as ``missing``, more precisely
    unreadable: int = 0
    nonconforming: int = 0  # answers that failed the job's responseFormat (counted in failed)
    # rows an expired job never reached (a partial merge): error lines ``EXPIRED``, counted in
    # failed, so that row retries send them again (a passing reason) and reports say so
    unreached: int = 0


class Usage(msgspec.Struct, frozen=True, gc=False):
    """The tokens the merged answers were billed for, summed from their ``usage`` (issue 15):
    what "spend so far" and the expected output of the next run are computed from."""

    rows: int  # answers that reported usage
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


class ResultRecord(msgspec.Struct, frozen=True):
    job_name: str
    job_ids: tuple[str, ...]  # the lineage merged, in order; the last one decides staleness
    output: FileStamp
    errors: FileStamp
    counts: MergeCounts
    version: int = RECORD_VERSION
    partial: bool = False  # an expired job's results: rows may be missing, none may be extra
    usage: Usage | None = None  # None: recorded before usage was summed
    inputs: InputsUsed | None = None  # None: a remote input, or merged before it was recorded
    # What this job's own runs were billed for: its answers (those refused by responseFormat
    # too: they were generated), not answers reused from other jobs. "Spend so far" (status,
    # describe, results, the daemon's counter). None: recorded before it was kept apart.
    spend: Usage | None = None

    @property
    def spent_usage(self) -> Usage | None:
        """The usage "spend so far" prices (``usage`` for records made before ``spend``)."""
        return self.spend if self.spend is not None else self.usage

    @property
    def last_job_id(self) -> str:
        return self.job_ids[-1] if self.job_ids else ""


@dataclass(frozen=True)
class LocalResult:
    """The planner's view of one declared job's results on disk."""

    record: ResultRecord | None
    verified: bool  # the files on disk are exactly what the record says
    present: bool = False  # the results file exists (with or without a record)


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def check_target(
    output: Path, *, root: Path, job_name: str = "", table: Path | None = None
) -> None:
    """Raise ResultsError if the results (their errors sibling, or the job's ``output.table``)
    certainly cannot be written: a path component is a file, the path is a folder or a device,
    the folder is read-only. Called before any download, so such a run fails at once and
    creates nothing."""
    who = f"{job_name}: " if job_name else ""
    for target in derived_paths(output, table):
        shown = _shown(target, root)
        if target.is_dir():
            raise ResultsError(f"{who}cannot write results to '{shown}': it is a folder")
        if target.exists() and not target.is_file():
            raise ResultsError(f"{who}cannot write results to '{shown}': it is not a regular file")
    folder = output.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        why = "a broken symlink" if folder.is_symlink() else "a file, not a folder"
        raise ResultsError(
            f"{who}cannot write results to '{_shown(output, root)}': "
            f"'{_shown(folder, root)}' is {why}"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ResultsError(
            f"{who}cannot write results to '{_shown(output, root)}': "
            f"the folder '{_shown(folder, root)}' is not writable"
        )


def os_problem(job_name: str, exc: OSError, output: Path, root: Path) -> str:
    """A sentence for an OSError met while fetching or writing results (no traceback)."""
    where = _shown(Path(exc.filename), root) if exc.filename else _shown(output, root)
    why = exc.strerror or type(exc).__name__
    hint = "; free some space and apply again" if exc.errno == errno.ENOSPC else ""
    return (
        f"{job_name}: results not written ({why}: '{where}'); the results on disk are "
        f"unchanged and no temp files were left{hint}"
    )


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def write_atomic(
    target: Path, chunks: Iterable[bytes], *, root: Path, scratch: Scratch | None = None
) -> FileStamp:
    """temp file (under .batchops/, so no stray files where users look) + fsync + os.replace."""
    if scratch is not None:
        return _commit(_stage(scratch, target, chunks), target, scratch)
    with Scratch(root) as run:
        return _commit(_stage(run, target, chunks), target, run)


@dataclass(frozen=True)
class _Staged:
    path: Path
    lines: int
    sha256: str


def _stage(scratch: Scratch, target: Path, chunks: Iterable[bytes]) -> _Staged:
    """Write ``chunks`` to a fsynced temp file in the scratch folder; count lines, hash bytes."""
    fd, name = tempfile.mkstemp(
        prefix=f"{short_name(target.name)}.", suffix=".tmp", dir=scratch.path
    )
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are ordinary files people share
    digest, lines = hashlib.sha256(), 0
    with os.fdopen(fd, "wb") as fh:
        for chunk in chunks:
            digest.update(chunk)
            lines += chunk.count(b"\n")
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    return _Staged(Path(name), lines, digest.hexdigest())


def _commit(staged: _Staged, target: Path, scratch: Scratch) -> FileStamp:
    """Rename the staged file over ``target``: the old file stays whole until this instant."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staged.path.replace(target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _replace_across(staged.path, target, scratch)
    _fsync_dir(target.parent)
    stat = target.stat()
    return FileStamp(str(target), stat.st_size, stat.st_mtime_ns, staged.sha256)


def _replace_across(staged: Path, target: Path, scratch: Scratch) -> None:
    """.batchops/ on another filesystem than the output (EXDEV): stage again beside the target,
    under a name the next run recognises if this one is killed, and never leave it behind."""
    sweep_beside(target, scratch.base)
    local = scratch.beside(target)
    try:
        with staged.open("rb") as src, local.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        local.replace(target)
    finally:
        local.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def local_state(
    root: Path, job_name: str, output: Path, *, records: Mapping[str, ResultRecord] | None = None
) -> LocalResult:
    """A stat per file against the record: no download, no API call. Pass ``records`` (from
    ``local_records``) when checking many jobs: one query instead of one per job."""
    record = (records if records is not None else local_records(root)).get(job_name)
    if record is None or record.output.path != str(output):
        return LocalResult(record=None, verified=False, present=output.is_file())
    # A record of an incomplete merge (saved by versions that wrote before verifying) is never
    # verified: those results are fetched again.
    verified = (
        problem(record, partial=record.partial) is None
        and stamp_matches(record.output, record.output.path)
        and stamp_matches(record.errors, record.errors.path)
    )
    return LocalResult(record=record, verified=verified, present=verified or output.is_file())


def problem(record: ResultRecord, *, partial: bool) -> str | None:
    """A human sentence when a merged result does not account for every input row exactly once."""
    return _problem(record.job_name, record.counts, partial=partial)


def _problem(job_name: str, c: MergeCounts, *, partial: bool) -> str | None:
    parts = []
    if c.missing and not partial:
        parts.append(f"{c.missing} of {c.expected} input rows have neither a result nor an error")
    if c.unexpected:
        parts.append(f"{c.unexpected} output rows have a custom_id the input does not hold")
    if c.unreadable and not partial:
        parts.append(f"{c.unreadable} output lines have no readable custom_id (a torn download?)")
    return f"{job_name}: " + "; ".join(parts) if parts else None


def first_errors(path: Path | str, *, limit: int = 3, width: int = 200) -> tuple[str, ...]:
    """The first ``limit`` lines of an errors file as "custom_id: message" (each cut to
    ``width`` characters), for the closing line and the step summary. Reads only those lines."""
    found: list[str] = []
    try:
        with Path(path).open("rb") as fh:
            for raw in fh:
                if len(found) >= limit:
                    break
                if raw.strip():
                    found.append(_error_text(raw)[:width])
    except OSError:
        return ()
    return tuple(found)


def _error_text(raw: bytes) -> str:
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace").strip()
    if not isinstance(line, dict):
        return str(line)
    error = line.get("error")
    message = error.get("message", error) if isinstance(error, dict) else error
    return f"{line.get('custom_id', '?')}: {message}"


# -- merging a lineage ---------------------------------------------------------------------------

_MERGE_SCHEMA = """
CREATE TABLE line (cid TEXT NOT NULL, ok INTEGER NOT NULL, file INTEGER NOT NULL,
                   start INTEGER NOT NULL, size INTEGER NOT NULL, pt INTEGER, ct INTEGER,
                   cached INTEGER, own INTEGER NOT NULL, PRIMARY KEY (cid, ok))
                   WITHOUT ROWID;
CREATE TABLE want (cid TEXT PRIMARY KEY, pos INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE rejected (cid TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE unreached (cid TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
"""
UNREACHED_CODE = "EXPIRED"
UNREACHED = "the job expired before this row ran (all its resumes used)"
_NO_TOKENS = {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0}
# Input order first (people diff results against inputs), then rows the input lacks, by custom_id.
_IN_ORDER = """
SELECT l.cid, l.file, l.start, l.size FROM line l LEFT JOIN want w ON w.cid = l.cid
WHERE l.ok = ? ORDER BY w.pos IS NULL, w.pos, l.cid
"""


def merge_lineage(
    dataset_dirs: Sequence[Path],
    *,
    job_name: str,
    job_ids: Sequence[str],
    output: Path,
    expected_ids: Iterable[str] | None,
    root: Path,
    partial: bool = False,
    scratch: Scratch | None = None,
    check: Callable[[bytes], str | None] | None = None,
    inputs: InputsUsed | None = None,
) -> ResultRecord:
    """Merge the lineage's outputs (later successes and errors win; a success anywhere beats any
    error), verify the merge against the input, stage both files, check them, and only then
    rename them into place and save the record. A merge that does not account for every input
    row (``partial``: an expired job's, may miss rows) raises ResultsError and changes nothing.

    ``expected_ids`` is None when the input is a remote-only dataset; then the custom_ids seen are
    the expectation and only duplicates could be a problem (the merge makes those impossible).
    ``check`` (a job's responseFormat) returns why a successful line's answer is unacceptable, or
    None; such a line is moved to the errors file with that message, as a failed row.
    ``inputs`` (what the input was) is saved in the record for ``batchops results``.
    """
    args = (dataset_dirs, job_name, job_ids, output, expected_ids, partial, check, inputs)
    try:
        if scratch is not None:
            return _merge(*args, scratch)
        with Scratch(root) as run:
            return _merge(*args, run)
    except sqlite3.Error as exc:  # the merge index: disk full, I/O error
        raise ResultsError(
            f"{job_name}: results not written ({exc}); the results on disk are unchanged"
        ) from exc


def _merge(
    dataset_dirs: Sequence[Path],
    job_name: str,
    job_ids: Sequence[str],
    output: Path,
    expected_ids: Iterable[str] | None,
    partial: bool,
    check: Callable[[bytes], str | None] | None,
    inputs: InputsUsed | None,
    scratch: Scratch,
) -> ResultRecord:
    files = [d / name for d in dataset_dirs for name in (OUTPUT_FILE, ERRORS_FILE)]
    db = sqlite3.connect(scratch.path / f"{job_name}.merge.db")
    try:
        db.executescript(_MERGE_SCHEMA)
        unreadable = _index(db, files, runs_of(job_name))
        if check is not None:
            _reject(db, files, check)
        if expected_ids is not None:
            db.executemany("INSERT OR IGNORE INTO want VALUES (?, ?)", _positions(expected_ids))
            if partial:
                _mark_unreached(db, job_ids[-1] if job_ids else "")
        counts = _counts(db, known_input=expected_ids is not None, unreadable=unreadable)
        usage, spend = _sum_usage(db), _sum_spend(db)
        gap = _problem(job_name, counts, partial=partial)
        if gap is not None:
            raise ResultsError(f"{gap}; nothing was written, the results on disk are unchanged")
        out = _stage(scratch, output, _copy_lines(db, files, ok=True))
        err = _stage(scratch, errors_path(output), _copy_lines(db, files, ok=False))
    finally:
        db.close()
    if (out.lines, err.lines) != (counts.succeeded, counts.failed):
        raise ResultsError(f"{job_name}: the merged files do not hold the rows merged; not written")
    stamps = _commit(out, output, scratch), _commit(err, errors_path(output), scratch)
    record = ResultRecord(
        job_name,
        tuple(job_ids),
        *stamps,
        counts,
        partial=partial,
        usage=usage,
        inputs=inputs,
        spend=spend,
    )
    try:
        save_record(scratch.root, record)
    except sqlite3.Error as exc:  # the files are whole; unrecorded, they are fetched again
        raise ResultsError(
            f"{job_name}: results written but not recorded ({exc}); the next "
            "apply fetches them again"
        ) from exc
    return record


def _positions(ids: Iterable[str]) -> Iterator[tuple[str, int]]:
    return ((cid, pos) for pos, cid in enumerate(ids))


def _index(db: sqlite3.Connection, files: Sequence[Path], own: Callable[[str], bool]) -> int:
    """custom_id -> where its line is; files go in lineage order, so a later line replaces.
    ``own``: whether a line's ``job`` is one of this job's runs (a line naming no job is from
    the lineage's own download). Returns how many non-blank result lines had no readable
    custom_id."""
    unreadable = [0]
    for number, path in enumerate(files):
        ok = int(path.name == OUTPUT_FILE)
        spans = _line_spans(path, unreadable if ok else [0])
        rows = (
            (cid, ok, number, start, size, *usage, job is None or own(job))
            for cid, start, size, usage, job in spans
        )
        db.executemany("INSERT OR REPLACE INTO line VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("DELETE FROM line WHERE ok = 0 AND cid IN (SELECT cid FROM line WHERE ok = 1)")
    return unreadable[0]


_NO_USAGE = (None, None, None)
_Span = tuple[str, int, int, tuple[int | None, int | None, int | None], str | None]


def _line_spans(path: Path, unreadable: list[int]) -> Iterator[_Span]:
    """(custom_id, offset, length without the newline, usage, job) of each attributable line
    of a file; other non-blank lines are counted in ``unreadable[0]``."""
    if not path.is_file():
        return
    offset = 0
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            value = _row(line) if line.strip() else None
            cid = value.get("custom_id") if value is not None else None
            if value is not None and isinstance(cid, str):
                job = value.get("job")
                yield cid, offset, len(line), _usage(value), job if isinstance(job, str) else None
            elif line.strip():
                unreadable[0] += 1
            offset += len(raw)


def _row(line: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # a torn or foreign line cannot be attributed; skip it
    return value if isinstance(value, dict) else None


def _usage(row: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    """(prompt, completion, cached) tokens of a result row: the neutral ``usage`` every provider
    writes (docs/reconciler.md), else an OpenAI-shaped ``response.usage``."""
    neutral = row.get("usage")
    if isinstance(neutral, dict) and "input_tokens" in neutral:
        return (
            _int(neutral.get("input_tokens")),
            _int(neutral.get("output_tokens")),
            _int(neutral.get("cached_tokens")),
        )
    response = row.get("response")
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return _NO_USAGE
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")), _int(cached)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _sum_usage(db: sqlite3.Connection) -> Usage | None:
    """The usage of the answers merged (reused ones too): the expected output of a next run."""
    rows, pt, ct, cached = db.execute(
        "SELECT count(*), sum(pt), sum(ct), sum(coalesce(cached, 0)) FROM line "
        "WHERE ok = 1 AND pt IS NOT NULL AND ct IS NOT NULL"
    ).fetchone()
    return Usage(rows, pt, ct, cached) if rows else None


def _sum_spend(db: sqlite3.Connection) -> Usage:
    """What the job's own runs were billed for: every line of theirs that reports usage, the
    answers responseFormat refused included; reused answers are another job's spend."""
    rows, pt, ct, cached = db.execute(
        "SELECT count(*), coalesce(sum(pt), 0), coalesce(sum(ct), 0), "
        "coalesce(sum(cached), 0) FROM line WHERE own = 1 AND pt IS NOT NULL AND ct IS NOT NULL"
    ).fetchone()
    return Usage(rows, pt, ct, cached)


def _reject(
    db: sqlite3.Connection, files: Sequence[Path], check: Callable[[bytes], str | None]
) -> None:
    """Successful lines whose answer ``check`` refuses become error lines (file -1: the line is in
    the ``rejected`` table), keeping the answer beside the reason for whoever debugs it."""
    succeeded = db.execute("SELECT cid, file, start, size FROM line WHERE ok = 1")
    rejected = _rejected_lines(succeeded, files, check)
    db.executemany("INSERT OR REPLACE INTO rejected VALUES (?, ?)", rejected)
    db.execute(
        "UPDATE line SET ok = 0, file = -1 WHERE ok = 1 AND cid IN (SELECT cid FROM rejected)"
    )


def _rejected_lines(
    rows: Iterable[tuple[str, int, int, int]],
    files: Sequence[Path],
    check: Callable[[bytes], str | None],
) -> Iterator[tuple[str, bytes]]:
    handles: dict[int, int] = {}
    try:
        for cid, number, start, size in rows:
            if number not in handles:
                handles[number] = os.open(files[number], os.O_RDONLY)
            line = os.pread(handles[number], size, start)
            reason = check(line)
            if reason is not None:
                error = {"code": "RESPONSE_FORMAT", "message": reason}
                response = orjson.loads(line).get("response")
                yield cid, orjson.dumps({"custom_id": cid, "error": error, "response": response})
    finally:
        for handle in handles.values():
            os.close(handle)


def _mark_unreached(db: sqlite3.Connection, job: str) -> None:
    """The input rows an expired lineage never reached become error lines (file -2: the line is
    in the ``unreached`` table) in the results schema, with the code ``EXPIRED``."""
    cids = [
        cid
        for (cid,) in db.execute(
            "SELECT cid FROM want WHERE cid NOT IN (SELECT cid FROM line) ORDER BY pos"
        )
    ]
    row = {
        "text": None,
        "finish_reason": None,
        "usage": _NO_TOKENS,
        "error": UNREACHED,
        "error_code": UNREACHED_CODE,
        "job": job,
        "response": None,
    }
    lines = ((cid, orjson.dumps({"custom_id": cid, **row})) for cid in cids)
    db.executemany("INSERT INTO unreached VALUES (?, ?)", lines)
    db.execute(
        "INSERT INTO line (cid, ok, file, start, size, own) "
        "SELECT cid, 0, -2, 0, 0, 1 FROM unreached"
    )


def _copy_lines(db: sqlite3.Connection, files: Sequence[Path], *, ok: bool) -> Iterator[bytes]:
    handles: dict[int, int] = {}
    try:
        for cid, number, start, size in db.execute(_IN_ORDER, (int(ok),)):
            if number < 0:
                table = "rejected" if number == -1 else "unreached"
                sql = f"SELECT body FROM {table} WHERE cid = ?"  # noqa: S608 (our two names)
                body = db.execute(sql, (cid,)).fetchone()
                yield bytes(body[0]) + b"\n"
                continue
            if number not in handles:
                handles[number] = os.open(files[number], os.O_RDONLY)
            yield os.pread(handles[number], size, start) + b"\n"
    finally:
        for handle in handles.values():
            os.close(handle)


def _counts(db: sqlite3.Connection, *, known_input: bool, unreadable: int) -> MergeCounts:
    def one(sql: str) -> int:
        value: int = db.execute(sql).fetchone()[0]
        return value

    succeeded = one("SELECT count(*) FROM line WHERE ok = 1")
    failed = one("SELECT count(*) FROM line WHERE ok = 0")
    nonconforming = one("SELECT count(*) FROM rejected")
    unreached = one("SELECT count(*) FROM unreached")
    if not known_input:
        return MergeCounts(
            succeeded + failed,
            succeeded,
            failed,
            missing=0,
            unexpected=0,
            unreadable=unreadable,
            nonconforming=nonconforming,
        )
    return MergeCounts(
        expected=one("SELECT count(*) FROM want"),
        succeeded=succeeded,
        failed=failed,
        missing=one("SELECT count(*) FROM want WHERE cid NOT IN (SELECT cid FROM line)"),
        unexpected=one("SELECT count(*) FROM line WHERE cid NOT IN (SELECT cid FROM want)"),
        nonconforming=nonconforming,
        unreached=unreached,
    )


# -- records: one SQLite file for every job's, so a pass reads them all in one query ---------------

_RECORDS_SCHEMA = "CREATE TABLE IF NOT EXISTS record (job TEXT PRIMARY KEY, body BLOB NOT NULL)"


_WRITE_LOCK = threading.Lock()  # apply's download workers save records from several threads


def _records_db(root: Path) -> sqlite3.Connection:
    """The records store; one that is not a database is a damaged cache, so it is dropped and
    begun again (the next pass downloads those results again). A busy one is just waited for."""
    path = ensure_state_dir(root) / "results.db"
    private_file(path)  # SQLite gives its -wal and -shm files the database's mode
    try:
        return _open_records(path)
    except sqlite3.OperationalError:
        raise  # locked or unreachable: never a reason to throw the store away
    except sqlite3.DatabaseError:
        for stale in (path, path.with_name("results.db-wal"), path.with_name("results.db-shm")):
            stale.unlink(missing_ok=True)
        return _open_records(path)


def _open_records(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30)  # other processes (a second apply, watch) write too
    try:
        with contextlib.suppress(sqlite3.OperationalError):  # busy: another writer set it already
            db.execute("PRAGMA journal_mode=WAL")
        db.execute(_RECORDS_SCHEMA)
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def save_record(root: Path, record: ResultRecord) -> None:
    body = orjson.dumps(msgspec.to_builtins(record), option=orjson.OPT_SORT_KEYS)
    with _WRITE_LOCK:
        db = _records_db(root)
        try:
            with db:
                db.execute("INSERT OR REPLACE INTO record VALUES (?, ?)", (record.job_name, body))
        finally:
            db.close()


def local_records(root: Path) -> dict[str, ResultRecord]:
    """Every job's record, by job name; a damaged one is left out (it means "download again")."""
    if not (state_dir(root) / "results.db").is_file():
        return {}
    db = _records_db(root)
    try:
        rows = db.execute("SELECT job, body FROM record").fetchall()
    finally:
        db.close()
    parsed = ((job, _parse_record(body)) for job, body in rows)
    return {job: record for job, record in parsed if record is not None}


def local_record(root: Path, job_name: str) -> ResultRecord | None:
    """One job's record (None: none, or damaged)."""
    if not (state_dir(root) / "results.db").is_file():
        return None
    db = _records_db(root)
    try:
        row = db.execute("SELECT body FROM record WHERE job = ?", (job_name,)).fetchone()
    finally:
        db.close()
    return _parse_record(row[0]) if row is not None else None


def spend_added(before: ResultRecord | None, after: ResultRecord) -> Usage | None:
    """What a merge added to a job's spend: its runs' usage not already in the record it
    replaced (a row retry's merge adds the retried rows, not the whole job again)."""
    new = after.spent_usage
    old = before.spent_usage if before is not None else None
    if new is None or old is None:
        return new
    return Usage(
        max(new.rows - old.rows, 0),
        max(new.prompt_tokens - old.prompt_tokens, 0),
        max(new.completion_tokens - old.completion_tokens, 0),
        max(new.cached_tokens - old.cached_tokens, 0),
    )


_RECORD = msgspec.json.Decoder(ResultRecord)


def _parse_record(body: bytes) -> ResultRecord | None:
    try:
        record = _RECORD.decode(body)  # typed, in C: a thousand records in a few milliseconds
    except msgspec.DecodeError:
        return None
    return record if record.version == RECORD_VERSION else None
