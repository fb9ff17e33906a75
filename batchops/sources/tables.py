"""Tables in: CSV and TSV (stdlib ``csv``), JSONL records, and Parquet (``pyarrow``, optional).

Called by ``batchops.sources.render``. Each reader streams one file as ``(line, row)`` pairs: the
1-based line a CSV record starts on (a quoted cell may span lines), the JSONL line, or the Parquet
row number; ``row`` maps column names to values. ``columns`` tells the names known before reading
any row (a CSV header, a Parquet schema; JSONL: the first record's keys), so a template can be
checked against them before rendering. Problems are raised as ``TableProblem`` with their line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

PARQUET_BATCH = 8192
MISSING_PYARROW = (
    "reading Parquet needs pyarrow: pip install 'batchops[parquet]' (or pip install pyarrow)"
)

Row = dict[str, Any]


class TableProblem(Exception):
    """A problem at ``line`` of the file being read (1 for the file as a whole)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def columns(path: Path, fmt: str) -> list[str]:
    """The column names known before reading rows; [] when the table is empty."""
    if fmt in ("csv", "tsv"):
        with _open_text(path) as fh:
            header = next(csv.reader(fh, dialect=_dialect(fmt)), [])
        return header
    if fmt == "parquet":
        return list(_parquet(path).schema_arrow.names)
    for _, row in read_rows(path, fmt):
        return list(row)
    return []


def read_rows(path: Path, fmt: str) -> Iterator[tuple[int, Row]]:
    if fmt in ("csv", "tsv"):
        return _csv_rows(path, fmt)
    if fmt == "parquet":
        return _parquet_rows(path)
    return _jsonl_rows(path)


def _dialect(fmt: str) -> type[csv.Dialect]:
    return csv.excel_tab if fmt == "tsv" else csv.excel


def _open_text(path: Path) -> io.TextIOWrapper:
    # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name.
    return path.open(encoding="utf-8-sig", newline="")


def _csv_rows(path: Path, fmt: str) -> Iterator[tuple[int, Row]]:
    with _open_text(path) as fh:
        reader = csv.reader(fh, dialect=_dialect(fmt), strict=True)
        try:
            header = next(reader, None)
            if header is None:
                return
            _check_header(header)
            width, start = len(header), reader.line_num + 1
            for cells in reader:
                if cells:  # blank lines are no rows
                    if len(cells) != width:
                        message = f"row has {len(cells)} cells; the header has {width}"
                        raise TableProblem(start, message)
                    yield start, dict(zip(header, cells, strict=True))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise TableProblem(reader.line_num or 1, f"invalid {fmt.upper()}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise TableProblem(reader.line_num + 1, "not valid UTF-8") from exc


def _check_header(header: list[str]) -> None:
    seen: set[str] = set()
    for name in header:
        if not name:
            raise TableProblem(1, "the header has an empty column name")
        if name in seen:
            raise TableProblem(1, f"the header names column '{name}' twice")
        seen.add(name)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Row]]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise TableProblem(number, f"invalid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise TableProblem(number, "each line must be a JSON object (one record)")
            yield number, row


def _parquet(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise TableProblem(1, MISSING_PYARROW) from exc
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types
        raise TableProblem(1, f"not a readable Parquet file: {exc}") from exc


def _parquet_rows(path: Path) -> Iterator[tuple[int, Row]]:
    number = 0
    batches = _parquet(path).iter_batches(batch_size=PARQUET_BATCH)
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:  # a damaged row group: pyarrow raises several unrelated types
            raise TableProblem(number + 1, f"not a readable Parquet file: {exc}") from exc
        if batch is None:
            return
        for row in batch.to_pylist():
            number += 1
            yield number, row
