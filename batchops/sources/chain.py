"""A job's verified results joined to its input rows -> the table a downstream dataset renders.

Called by ``batchops.chains`` once every upstream job's results are verified on disk. The table is
JSONL records, one per upstream row that has an answer: the upstream input row's columns, its
``custom_id``, and ``answer`` (``text``, ``fields`` parsed when the upstream job declared a
``responseFormat``, ``finish_reason``, ``job``, ``model``, ``combination``); with
``combine: all`` the row carries ``answers``, one such object per upstream job, in the matrix's
order. The join is
``batchops.sources.join.Joined`` (flat memory). The table is content-addressed under
``.batchops/chains/<dataset>/``: rebuilt only when an upstream's results or inputs changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batchops.config import STATE_DIR
from batchops.sources.join import FIELDS, JobResults, Joined, input_rows

CHAINS_DIR = Path(STATE_DIR, "chains")
TABLE_VERSION = "2"  # bump when the rows built from the same results change
_ANSWER, _ERROR = FIELDS.index("answer"), FIELDS.index("error")
_FINISH = FIELDS.index("finish_reason")


@dataclass(frozen=True)
class Upstream:
    """One upstream job as the table needs it."""

    job: str
    model: str
    combination: tuple[tuple[str, str], ...]
    input_files: tuple[Path, ...]  # its input dataset's files (rendered: the artifact)
    output: Path  # its verified merged results
    errors: Path
    output_sha256: str  # from its results record: what makes the table content-addressed
    parse_fields: bool  # it declared a responseFormat: answers are JSON objects


def chain_table(dataset: str, upstream: Sequence[Upstream], *, combine: str, root: Path) -> Path:
    """The table's path, built when its key is new (old keys of the dataset are removed)."""
    folder = root / CHAINS_DIR / dataset
    path = folder / f"{_key(upstream, combine)}.jsonl"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".table-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            for row in _rows(upstream, combine=combine, tmp_dir=root / STATE_DIR / "tmp"):
                fh.write(orjson.dumps(row, default=str) + b"\n")
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    for other in folder.iterdir():
        if other != path and other.suffix == ".jsonl":
            shutil.rmtree(other, ignore_errors=True) if other.is_dir() else other.unlink()
    return path


def _key(upstream: Sequence[Upstream], combine: str) -> str:
    stamps = []
    for u in upstream:
        files = [[str(f), *_stamp(f)] for f in u.input_files]
        stamps.append([u.job, u.model, list(u.combination), u.output_sha256, u.parse_fields, files])
    settings = {"version": TABLE_VERSION, "combine": combine, "upstream": stamps}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _rows(upstream: Sequence[Upstream], *, combine: str, tmp_dir: Path) -> Iterator[dict[str, Any]]:
    first = upstream[0]
    inputs = input_rows(first.input_files) if first.input_files else None
    jobs = [JobResults(u.job, u.output, u.errors) for u in upstream]
    with Joined(inputs, jobs, tmp_dir=tmp_dir) as joined:
        width = len(joined.input_columns)
        names = joined.input_columns
        for values in joined.rows():
            custom_id, columns = values[0], values[1 : 1 + width]
            found = values[1 + width :]
            answers = [
                _answer(u, found[i * len(FIELDS) : (i + 1) * len(FIELDS)])
                for i, u in enumerate(upstream)
            ]
            row = {k: v for k, v in zip(names, columns, strict=True) if v is not None}
            row["custom_id"] = custom_id
            if combine == "all":
                if not any(a is not None for a in answers):
                    continue
                row["answers"] = answers
            else:
                if answers[0] is None:
                    continue  # a failed upstream row has no answer to build on
                row["answer"] = answers[0]
            yield row


def _answer(u: Upstream, fields: Sequence[Any]) -> dict[str, Any] | None:
    text = fields[_ANSWER]
    if fields[_ERROR] is not None or text is None:
        return None
    parsed = None
    if u.parse_fields and isinstance(text, str):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None  # a nonconforming answer is a failed row at merge; kept out anyway
    return {
        "text": text,
        "fields": parsed,
        "finish_reason": fields[_FINISH],
        "job": u.job,
        "model": u.model,
        "combination": dict(u.combination),
    }
