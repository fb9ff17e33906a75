"""Results on disk: their records, their state, and atomic writes of them.

``batchops.merge`` merges a job lineage's outputs and writes them with ``stage`` and ``commit``
(staged, fsynced, renamed) before ``save_record``. The planner reads ``local_records`` and
``local_state`` to decide whether a finished job's results are already on disk and verified: one
query for all jobs and a stat per file, never an API call. The record is only a cache: deleting
it makes the next pass download again.
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec
import orjson

from batchops.config import STATE_DIR, ensure_state_dir
from batchops.errors import BatchopsError
from batchops.layout import derived_paths
from batchops.private import private_file
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
    table: str | None = None  # the ``output.table`` written from these results (its stamp)

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
        return commit(stage(scratch, target, chunks), target, scratch)
    with Scratch(root) as run:
        return commit(stage(run, target, chunks), target, run)


@dataclass(frozen=True)
class _Staged:
    path: Path
    lines: int
    sha256: str


def stage(scratch: Scratch, target: Path, chunks: Iterable[bytes]) -> _Staged:
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


def commit(staged: _Staged, target: Path, scratch: Scratch) -> FileStamp:
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
    return count_problem(record.job_name, record.counts, partial=partial)


def count_problem(job_name: str, c: MergeCounts, *, partial: bool) -> str | None:
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
