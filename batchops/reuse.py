"""The reuse index: request hash -> where its answer is (job, custom_id, result line).

One SQLite file, ``.batchops/reuse.sqlite`` (private, like every cache under ``.batchops/``),
for the answers of this project's jobs. ``batchops.apply`` records a job's answered rows when it
merges the job's results; the reconciler looks the rows of each declared job up before planning
(``batchops.plan.rows``), so a row asked before is not sent again. It is only a cache: deleting it
costs downloads (``rebuild``: earlier jobs' inputs and outputs), never inference. Failed rows are
never recorded: only an answer is reused.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from batchops.config import ensure_state_dir
from batchops.private import private_file
from batchops.providers import OUTPUT_FILE
from batchops.rowid import file_requests

INDEX_FILE = "reuse.sqlite"
_CHUNK = 900  # host parameters per query (SQLite's limit is 999 on old builds)
_SCAN_FROM = 10_000  # hashes from which one scan of the index beats a join
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS answer (hash BLOB PRIMARY KEY, job TEXT NOT NULL, "
    "custom_id TEXT NOT NULL, line BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS indexed (job TEXT PRIMARY KEY) WITHOUT ROWID",
)


@dataclass(frozen=True, slots=True)
class Answer:
    """Who answered a request: the job (its line, under its custom_id, is in ``lines``)."""

    job: str


class ReuseIndex:
    """The index of one project root. Not shared between threads: open one per thread."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    def open(cls, root: Path) -> ReuseIndex:
        path = private_file(ensure_state_dir(root) / INDEX_FILE)
        db = sqlite3.connect(path, timeout=30.0)
        # Busy: another connection is switching it at the same moment (SQLite answers that at
        # once, without waiting: the two would deadlock), and it ends in WAL mode all the same.
        with contextlib.suppress(sqlite3.OperationalError):
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            db.execute(statement)
        return cls(db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ReuseIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(self, hashes: Sequence[bytes]) -> dict[bytes, Answer]:
        """The answers known for ``hashes`` (the others are new requests).

        Many hashes (a whole dataset's): one scan of the index against a set, the fastest way
        by far (bench/rows.py); a few: one join against a temporary table of them."""
        by_job: dict[str, Answer] = {}  # one Answer per job, shared: no object per row

        def answer(job: str) -> Answer:
            found = by_job.get(job)
            return found if found is not None else by_job.setdefault(job, Answer(job))

        if len(hashes) >= _SCAN_FROM:
            wanted = set(hashes)
            rows = self._db.execute("SELECT hash, job FROM answer")
            return {digest: answer(job) for digest, job in rows if digest in wanted}
        db = self._db
        db.execute("CREATE TEMP TABLE IF NOT EXISTS asked (hash BLOB PRIMARY KEY) WITHOUT ROWID")
        try:
            db.executemany("INSERT OR IGNORE INTO temp.asked VALUES (?)", ((h,) for h in hashes))
            sql = "SELECT a.hash, a.job FROM temp.asked q JOIN answer a USING (hash)"
            return {digest: answer(job) for digest, job in db.execute(sql)}
        finally:
            db.execute("DELETE FROM temp.asked")
            db.commit()

    def lines(self, hashes: Sequence[bytes]) -> Iterator[tuple[bytes, str, bytes]]:
        """(hash, job, result line) of each known answer among ``hashes``."""
        for start in range(0, len(hashes), _CHUNK):
            chunk = hashes[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT hash, job, line FROM answer WHERE hash IN ({marks})"  # noqa: S608
            yield from self._db.execute(sql, chunk)

    def record(self, jobs: Iterable[str], answers: Iterable[tuple[bytes, str, str, bytes]]) -> int:
        """Record answered rows, (hash, job, custom_id, result line) each, of ``jobs``; an
        answer already known keeps its first job (the one that was paid for it). Returns the
        count of new answers."""
        with self._db:
            cursor = self._db.executemany(
                "INSERT OR IGNORE INTO answer VALUES (?, ?, ?, ?)", answers
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO indexed VALUES (?)", ((job,) for job in jobs)
            )
            return cursor.rowcount

    def indexed_jobs(self) -> set[str]:
        """Jobs whose answers were recorded (``rebuild`` downloads only the others)."""
        return {job for (job,) in self._db.execute("SELECT job FROM indexed")}

    def size(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM answer").fetchone()[0])


# -- merging with reuse: ``batchops.apply`` calls these around ``merge.merge_lineage`` ---------


def _rows_by_request(prefix: bytes, input_files: Sequence[Path]) -> dict[bytes, list[str]]:
    rows: dict[bytes, list[str]] = {}
    for cid, digest in file_requests(prefix, input_files):
        rows.setdefault(digest, []).append(cid)
    return rows


def write_reused(
    root: Path, prefix: bytes, input_files: Sequence[Path], folder: Path, *, lineage: Sequence[str]
) -> int:
    """Write the known answers of the input's rows to ``folder/OUTPUT_FILE``, each under the
    custom_id of the row asking it now and naming the job that answered it. Answers of the
    ``lineage`` being merged are left out: its own rows come from its own download, which the
    merge verifies. Returns the count."""
    wanted = _rows_by_request(prefix, input_files)
    folder.mkdir(parents=True, exist_ok=True)
    own, count = frozenset(lineage), 0
    with ReuseIndex.open(root) as index, (folder / OUTPUT_FILE).open("wb") as out:
        for digest, job, line in index.lines(list(wanted)):
            if job in own:
                continue
            row = orjson.loads(line)
            row.setdefault("job", job)
            for cid in wanted[digest]:
                row["custom_id"] = cid
                out.write(orjson.dumps(row) + b"\n")
                count += 1
    return count


def record_answers(
    root: Path, prefix: bytes, input_files: Sequence[Path], merged: Path, jobs: Sequence[str]
) -> int:
    """Record the answers in ``merged`` (a results file) that ``jobs`` wrote, under their
    request's hash. Returns the count of new answers."""
    requests = {cid: digest for cid, digest in file_requests(prefix, input_files)}
    wrote = frozenset(jobs)

    def answers() -> Iterator[tuple[bytes, str, str, bytes]]:
        with merged.open("rb") as handle:
            for raw in handle:
                line = raw.rstrip(b"\r\n")
                row = orjson.loads(line) if line.strip() else None
                if not isinstance(row, dict) or row.get("job") not in wrote:
                    continue
                cid = row.get("custom_id")
                if isinstance(cid, str) and cid in requests:
                    yield requests[cid], row["job"], cid, line

    with ReuseIndex.open(root) as index:
        return index.record(jobs, answers())
