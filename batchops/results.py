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
import hashlib
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import orjson

from batchops.config import STATE_DIR
from batchops.errors import BatchopsError
from batchops.wire import ERRORS_FILE, RESULTS_FILE

RECORD_VERSION = 1


class ResultsError(BatchopsError):
    """A merged result does not account for every input row (or holds rows the input lacks)."""


# Records are msgspec Structs: a plan of 1,000 finished jobs decodes 1,000 of them, three times
# faster than into dataclasses (bench/plan.py).


class FileStamp(msgspec.Struct, frozen=True, gc=False):
    """A file as we wrote it: enough to tell by stat (or, if needed, a hash) whether it moved."""

    path: str
    size: int
    mtime_ns: int
    sha256: str


class MergeCounts(msgspec.Struct, frozen=True, gc=False):
    expected: int  # input custom_ids (0 when unknown)
    succeeded: int
    failed: int
    missing: int  # input custom_ids with neither a result nor an error
    unexpected: int  # custom_ids in the output that the input does not hold
    nonconforming: int = 0  # answers that failed the job's responseFormat (counted in failed)


class ResultRecord(msgspec.Struct, frozen=True):
    job_name: str
    job_ids: tuple[str, ...]  # the lineage merged, in order; the last one decides staleness
    output: FileStamp
    errors: FileStamp
    counts: MergeCounts
    version: int = RECORD_VERSION

    @property
    def last_job_id(self) -> str:
        return self.job_ids[-1] if self.job_ids else ""


@dataclass(frozen=True)
class LocalResult:
    """The planner's view of one declared job's results on disk."""

    record: ResultRecord | None
    verified: bool  # the files on disk are exactly what the record says


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def errors_path(output: Path) -> Path:
    """The sibling errors file: ``<stem>.errors.jsonl``."""
    return output.with_name(f"{output.stem}.errors.jsonl")


def _tmp_dir(root: Path) -> Path:
    path = state_dir(root) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(target: Path, chunks: Iterable[bytes], *, root: Path) -> FileStamp:
    """temp file (under .batchops/, so no stray files where users look) + fsync + os.replace."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{target.name}.", suffix=".tmp", dir=_tmp_dir(root))
    tmp = Path(tmp_name)
    os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are ordinary files people share
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        _replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(target.parent)
    stat = target.stat()
    return FileStamp(str(target), stat.st_size, stat.st_mtime_ns, digest.hexdigest())


def _replace(tmp: Path, target: Path) -> None:
    try:
        tmp.replace(target)
    except OSError:
        # .batchops/ on another filesystem than the output (EXDEV): stage beside the target.
        local = target.with_name(f".{target.name}.batchops-tmp")
        shutil.copyfile(tmp, local)
        local.replace(target)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stamp_matches(stamp: FileStamp, path: Path | str) -> bool:
    """Same size and mtime: trusted without reading. Same size, new mtime (a touch): hash it."""
    try:
        stat = os.stat(path)  # noqa: PTH116 (str paths: see load_record)
    except OSError:
        return False
    if stat.st_size != stamp.size:
        return False
    return stat.st_mtime_ns == stamp.mtime_ns or _file_sha256(Path(path)) == stamp.sha256


def local_state(
    root: Path, job_name: str, output: Path, *, records: Mapping[str, ResultRecord] | None = None
) -> LocalResult:
    """A stat per file against the record: no download, no API call. Pass ``records`` (from
    ``local_records``) when checking many jobs: one query instead of one per job."""
    record = (records if records is not None else local_records(root)).get(job_name)
    if record is None or record.output.path != str(output):
        return LocalResult(record=None, verified=False)
    verified = stamp_matches(record.output, record.output.path) and stamp_matches(
        record.errors, record.errors.path
    )
    return LocalResult(record=record, verified=verified)


def problem(record: ResultRecord, *, partial: bool) -> str | None:
    """A human sentence when a merged result does not account for every input row exactly once."""
    c = record.counts
    parts = []
    if c.missing and not partial:
        parts.append(f"{c.missing} of {c.expected} input rows have neither a result nor an error")
    if c.unexpected:
        parts.append(f"{c.unexpected} output rows have a custom_id the input does not hold")
    return f"{record.job_name}: " + "; ".join(parts) if parts else None


# -- merging a lineage ---------------------------------------------------------------------------

_MERGE_SCHEMA = """
CREATE TABLE line (cid TEXT NOT NULL, ok INTEGER NOT NULL, file INTEGER NOT NULL,
                   start INTEGER NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (cid, ok))
                   WITHOUT ROWID;
CREATE TABLE want (cid TEXT PRIMARY KEY, pos INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE rejected (cid TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
"""
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
    check: Callable[[bytes], str | None] | None = None,
) -> ResultRecord:
    """Merge the lineage's outputs (later successes and errors win; a success anywhere beats any
    error), write results and errors atomically, verify against the input, and save the record.

    ``expected_ids`` is None when the input is a remote-only dataset; then the custom_ids seen are
    the expectation and only duplicates could be a problem (the merge makes those impossible).
    ``check`` (a job's responseFormat) returns why a successful line's answer is unacceptable, or
    None; such a line is moved to the errors file with that message, as a failed row.
    """
    files = [d / name for d in dataset_dirs for name in (RESULTS_FILE, ERRORS_FILE)]
    fd, index_name = tempfile.mkstemp(prefix=f"{job_name}.", suffix=".merge.db", dir=_tmp_dir(root))
    os.close(fd)
    db = sqlite3.connect(index_name)
    try:
        db.executescript(_MERGE_SCHEMA)
        _index(db, files)
        if check is not None:
            _reject(db, files, check)
        if expected_ids is not None:
            db.executemany("INSERT OR IGNORE INTO want VALUES (?, ?)", _positions(expected_ids))
        out = write_atomic(output, _copy_lines(db, files, ok=True), root=root)
        err = write_atomic(errors_path(output), _copy_lines(db, files, ok=False), root=root)
        counts = _counts(db, known_input=expected_ids is not None)
    finally:
        db.close()
        Path(index_name).unlink(missing_ok=True)
    record = ResultRecord(job_name, tuple(job_ids), out, err, counts)
    save_record(root, record)
    return record


def _positions(ids: Iterable[str]) -> Iterator[tuple[str, int]]:
    return ((cid, pos) for pos, cid in enumerate(ids))


def _index(db: sqlite3.Connection, files: Sequence[Path]) -> None:
    """custom_id -> where its line is; files go in lineage order, so a later line replaces."""
    for number, path in enumerate(files):
        ok = int(path.name == RESULTS_FILE)
        rows = ((cid, ok, number, start, size) for cid, start, size in _line_spans(path))
        db.executemany("INSERT OR REPLACE INTO line VALUES (?, ?, ?, ?, ?)", rows)
    db.execute("DELETE FROM line WHERE ok = 0 AND cid IN (SELECT cid FROM line WHERE ok = 1)")


def _line_spans(path: Path) -> Iterator[tuple[str, int, int]]:
    """(custom_id, offset, length without the newline) of each attributable line of a file."""
    if not path.is_file():
        return
    offset = 0
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            cid = _custom_id(line) if line.strip() else None
            if cid is not None:
                yield cid, offset, len(line)
            offset += len(raw)


def _custom_id(line: bytes) -> str | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # a torn or foreign line cannot be attributed; skip it
    cid = value.get("custom_id") if isinstance(value, dict) else None
    return cid if isinstance(cid, str) else None


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
    rows: Iterable[tuple[str, int, int, int]], files: Sequence[Path],
    check: Callable[[bytes], str | None],
) -> Iterator[tuple[str, bytes]]:  # fmt: skip
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


def _copy_lines(db: sqlite3.Connection, files: Sequence[Path], *, ok: bool) -> Iterator[bytes]:
    handles: dict[int, int] = {}
    try:
        for cid, number, start, size in db.execute(_IN_ORDER, (int(ok),)):
            if number < 0:
                body = db.execute("SELECT body FROM rejected WHERE cid = ?", (cid,)).fetchone()
                yield bytes(body[0]) + b"\n"
                continue
            if number not in handles:
                handles[number] = os.open(files[number], os.O_RDONLY)
            yield os.pread(handles[number], size, start) + b"\n"
    finally:
        for handle in handles.values():
            os.close(handle)


def _counts(db: sqlite3.Connection, *, known_input: bool) -> MergeCounts:
    def one(sql: str) -> int:
        value: int = db.execute(sql).fetchone()[0]
        return value

    succeeded = one("SELECT count(*) FROM line WHERE ok = 1")
    failed = one("SELECT count(*) FROM line WHERE ok = 0")
    nonconforming = one("SELECT count(*) FROM rejected")
    if not known_input:
        return MergeCounts(succeeded + failed, succeeded, failed, missing=0, unexpected=0,
                           nonconforming=nonconforming)  # fmt: skip
    return MergeCounts(
        expected=one("SELECT count(*) FROM want"), succeeded=succeeded, failed=failed,
        missing=one("SELECT count(*) FROM want WHERE cid NOT IN (SELECT cid FROM line)"),
        unexpected=one("SELECT count(*) FROM line WHERE cid NOT IN (SELECT cid FROM want)"),
        nonconforming=nonconforming,
    )  # fmt: skip


# -- records: one SQLite file for every job's, so a pass reads them all in one query ---------------

_RECORDS_SCHEMA = "CREATE TABLE IF NOT EXISTS record (job TEXT PRIMARY KEY, body BLOB NOT NULL)"


_WRITE_LOCK = threading.Lock()  # apply's download workers save records from several threads


def _records_db(root: Path) -> sqlite3.Connection:
    """The records store; one that is not a database is a damaged cache, so it is dropped and
    begun again (the next pass downloads those results again). A busy one is just waited for."""
    path = state_dir(root) / "results.db"
    path.parent.mkdir(parents=True, exist_ok=True)
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


_RECORD = msgspec.json.Decoder(ResultRecord)


def _parse_record(body: bytes) -> ResultRecord | None:
    try:
        record = _RECORD.decode(body)  # typed, in C: a thousand records in a few milliseconds
    except msgspec.DecodeError:
        return None
    return record if record.version == RECORD_VERSION else None
