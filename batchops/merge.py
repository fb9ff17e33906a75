"""Merging a job lineage's outputs by custom_id, verified before anything is written.

``batchops.apply`` downloads every output dataset of a job's lineage into a temp folder under
``.batchops/`` and calls ``merge_lineage``, which indexes the lines by custom_id in a temporary
SQLite file and copies them out in input order, so memory stays flat whatever the output size;
the files are staged, checked, renamed into place and recorded (``batchops.results``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from batchops.identity import runs_of
from batchops.layout import errors_path
from batchops.providers import ERRORS_FILE, OUTPUT_FILE
from batchops.results import (
    MergeCounts,
    ResultRecord,
    ResultsError,
    Usage,
    commit,
    count_problem,
    save_record,
    stage,
)
from batchops.scratch import Scratch
from batchops.stamps import InputsUsed

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
        gap = count_problem(job_name, counts, partial=partial)
        if gap is not None:
            raise ResultsError(f"{gap}; nothing was written, the results on disk are unchanged")
        out = stage(scratch, output, _copy_lines(db, files, ok=True))
        err = stage(scratch, errors_path(output), _copy_lines(db, files, ok=False))
    finally:
        db.close()
    if (out.lines, err.lines) != (counts.succeeded, counts.failed):
        raise ResultsError(f"{job_name}: the merged files do not hold the rows merged; not written")
    stamps = commit(out, output, scratch), commit(err, errors_path(output), scratch)
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
