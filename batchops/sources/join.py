"""Results joined to their inputs by custom_id, in flat memory, for one job or several side by side.

Called by ``batchops results`` and by ``batchops.apply`` (``spec.output.table``). Inputs and
answers are indexed in a temporary SQLite file (under ``.batchops/tmp/``) and read back in input
order by one query with a LEFT JOIN per job, so a million rows cost disk, not memory.

An input row is a rendered dataset's source columns (its ``inputs.jsonl``) or, for a hand-written
dataset, its ``prompt`` (a chat's last user message, or the completion prompt). A remote-only
input has no rows here: the answers' custom_ids are then the rows, sorted. Each job adds
``answer``, ``finish_reason``, ``prompt_tokens``, ``completion_tokens`` and ``error`` (prefixed
``<job>.`` when there are several jobs). Anything that yields ``(custom_id, row)`` pairs can be an
input, which is how a job's results can later serve as another dataset's source.
"""

from __future__ import annotations

import contextlib
import operator
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batchops.sources.render import inputs_file

FIELDS = ("answer", "finish_reason", "prompt_tokens", "completion_tokens", "error")
_BATCH = 10_000


@dataclass(frozen=True)
class JobResults:
    name: str
    output: Path  # the merged results JSONL
    errors: Path  # its errors JSONL


def input_rows(files: Sequence[Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(custom_id, columns) of a dataset's rows, in order: source columns when rendered."""
    for file in files:
        sidecar = inputs_file(file)
        if sidecar is not None:
            yield from kept_rows(sidecar)
            continue
        with file.open("rb") as fh:
            for line in fh:
                if line.strip():
                    obj = orjson.loads(line)
                    yield obj["custom_id"], {"prompt": _prompt(obj.get("body"))}


def kept_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(custom_id, source columns) of a rendered dataset's ``inputs.jsonl``, or of a copy of it
    kept for a job's results (``batchops.sources.kept``)."""
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                obj = orjson.loads(line)
                yield obj["custom_id"], obj["row"]


def _prompt(body: Any) -> Any:
    if not isinstance(body, dict):
        return None
    if "prompt" in body:
        return body["prompt"]
    users = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    asked = [m for m in users if m.get("role") == "user"] or users
    return asked[-1].get("content") if asked else None


def answer_fields(obj: dict[str, Any]) -> tuple[Any, ...]:
    """(answer, finish_reason, prompt_tokens, completion_tokens, error) of one result line.

    Read from the neutral fields every provider writes (``text``, ``finish_reason``, ``usage``,
    ``error``: docs/reconciler.md, "The results schema"), so that jobs on different providers line
    up; a line without them (written before the neutral schema) is read from its OpenAI-shaped
    ``response``."""
    error = obj.get("error")
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else error
        return None, None, None, None, str(message)
    usage = obj.get("usage")
    if "text" in obj or (isinstance(usage, dict) and "input_tokens" in usage):
        tokens = _mapping(usage)
        return (
            obj.get("text"),
            obj.get("finish_reason"),
            tokens.get("input_tokens"),
            tokens.get("output_tokens"),
            None,
        )
    response = _mapping(obj.get("response"))
    choices = response.get("choices")
    choice = _mapping(choices[0] if isinstance(choices, list) and choices else None)
    answer = _mapping(choice.get("message")).get("content", choice.get("text"))
    usage = _mapping(response.get("usage"))
    return (
        answer,
        choice.get("finish_reason"),
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        None,
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class Joined:
    """The joined table: ``columns`` and ``rows()`` (tuples, streamed). Use as a context manager;
    the index is deleted on exit.

    ``orphans``: answers whose custom_id the inputs lack (the input changed after the job ran)
    are rows too, after the inputs, by custom_id, with empty input columns; ``orphans`` then
    counts them. Without it they are left out (a verified merge has none)."""

    def __init__(
        self,
        inputs: Iterable[tuple[str, dict[str, Any]]] | None,
        jobs: Sequence[JobResults],
        *,
        tmp_dir: Path,
        columns: Sequence[str] | None = None,
        key: str | None = None,
        orphans: bool = False,
    ) -> None:
        """``columns``: the input columns to carry (None: all). ``key``: the input column whose
        values are the custom_ids (a dataset's ``idColumn``), left out: ``custom_id`` shows it."""
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="join.", suffix=".db", dir=tmp_dir)
        os.close(fd)
        self._path = Path(name)
        self._db = sqlite3.connect(name)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-32768;"
            "CREATE TABLE input (pos INTEGER PRIMARY KEY, cid TEXT NOT NULL, data BLOB);"
            "CREATE TABLE res (job INTEGER, cid TEXT, answer, finish, ptok, ctok, error);"
        )
        self.jobs = list(jobs)
        self.orphans = 0
        self._seen: list[str] = []  # input columns in the order first met; rows store values
        try:
            self._load(inputs, orphans=orphans)
        except BaseException:
            self.close()  # no index left behind in .batchops/tmp/
            raise
        # every input column but the key, in order, whatever ``columns`` asks
        self.available = [c for c in self._seen if c != key]
        self.input_columns = list(self.available)
        if columns is not None:  # the order asked for, and only columns that exist
            self.input_columns = [c for c in columns if c in self.available]
        several = len(self.jobs) > 1
        job_columns = [f"{j.name}.{f}" if several else f for j in self.jobs for f in FIELDS]
        self.columns = ["custom_id", *self.input_columns, *job_columns]

    def _load(self, inputs: Iterable[tuple[str, dict[str, Any]]] | None, *, orphans: bool) -> None:
        if inputs is not None:
            self._load_inputs(inputs)
        for number, job in enumerate(self.jobs):
            self._load_job(number, job)
        # Appended, then indexed once (random-order inserts into a keyed table were 5x slower);
        # per job and row the last line loaded wins: a success, loaded after the errors.
        self._db.executescript(
            "CREATE INDEX res_key ON res (job, cid);"
            "DELETE FROM res WHERE rowid NOT IN (SELECT max(rowid) FROM res GROUP BY job, cid);"
        )
        if inputs is None:
            self._db.execute("INSERT INTO input (cid) SELECT DISTINCT cid FROM res ORDER BY cid")
        self._db.execute("CREATE INDEX input_cid ON input (cid)")
        if inputs is not None and orphans:
            self.orphans = self._db.execute(
                "INSERT INTO input (cid) SELECT DISTINCT cid FROM res "
                "WHERE cid NOT IN (SELECT cid FROM input) ORDER BY cid"
            ).rowcount

    def __enter__(self) -> Joined:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        with contextlib.suppress(OSError):
            self._path.unlink()

    def _load_inputs(self, inputs: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Each row's values as a JSON list in the order of ``self._seen``; a row with the same
        keys in the same order as the last (every row of a CSV) costs no Python per column."""
        seen = self._seen
        last: tuple[str, ...] = ()

        def rows() -> Iterator[tuple[str, bytes]]:
            nonlocal last
            for cid, row in inputs:
                keys = tuple(row)
                if keys != last:
                    seen.extend(k for k in keys if k not in seen)
                    last = keys if list(keys) == seen else ()
                    values = [row.get(c) for c in seen]
                else:
                    values = list(row.values())
                yield cid, orjson.dumps(values, default=str)

        self._db.executemany("INSERT INTO input (cid, data) VALUES (?, ?)", rows())

    def _load_job(self, number: int, job: JobResults) -> None:
        def rows() -> Iterator[tuple[Any, ...]]:
            for path in (job.errors, job.output):  # a success replaces an error of the same row
                if not path.is_file():
                    continue
                with path.open("rb") as fh:
                    for line in fh:
                        obj = _parse(line)
                        if obj is not None:
                            yield (number, obj["custom_id"], *answer_fields(obj))

        self._db.executemany("INSERT INTO res VALUES (?, ?, ?, ?, ?, ?, ?)", rows())

    def rows(self) -> Iterator[tuple[Any, ...]]:
        picks = ", ".join(
            f"r{n}.answer, r{n}.finish, r{n}.ptok, r{n}.ctok, r{n}.error"
            for n in range(len(self.jobs))
        )
        joins = " ".join(
            f"LEFT JOIN res r{n} ON r{n}.job = {n} AND r{n}.cid = i.cid"
            for n in range(len(self.jobs))
        )
        picked = f", {picks}" if picks else ""
        sql = f"SELECT i.cid, i.data{picked} FROM input i {joins} ORDER BY i.pos"  # noqa: S608
        width = len(self._seen)
        picks_of = _picker([self._seen.index(c) for c in self.input_columns])
        loads, empty = orjson.loads, [None] * width
        cursor = self._db.execute(sql)
        while batch := cursor.fetchmany(_BATCH):
            for cid, data, *answers in batch:
                values = loads(data) if data is not None else empty
                if len(values) < width:  # stored before a later row added columns
                    values += [None] * (width - len(values))
                yield (cid, *picks_of(values), *answers)


def _picker(indexes: list[int]) -> Callable[[list[Any]], Sequence[Any]]:
    """The values at ``indexes``, in C: all of them as they are, or an itemgetter."""
    if indexes == list(range(len(indexes))):
        count = len(indexes)
        return lambda values: values if len(values) == count else values[:count]
    if len(indexes) == 1:
        getter = operator.itemgetter(indexes[0])
        return lambda values: (getter(values),)
    return operator.itemgetter(*indexes) if indexes else lambda values: ()


def _parse(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    ok = isinstance(obj, dict) and isinstance(obj.get("custom_id"), str)
    return obj if ok else None
