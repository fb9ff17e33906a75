"""A joined table -> bytes: CSV, JSONL, a JSON array, or Parquet, streamed in chunks.

Called by ``batchops results`` (to a file or stdout) and ``batchops.apply`` (``spec.output.table``,
through ``batchops.results.write_atomic``). Each writer takes the column names and an iterator of
row tuples and yields ``bytes``; nothing holds the table. pyarrow is imported only for Parquet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

from batchops.errors import ConfigError
from batchops.sources.tables import MISSING_PYARROW

FORMATS = ("csv", "jsonl", "json", "parquet")
_CHUNK = 5_000  # rows per yielded chunk (and per Parquet row group)
_INT_FIELDS = ("prompt_tokens", "completion_tokens")


def cell(value: Any) -> str:
    """A value as table text: strings as they are, None as empty, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def chunks(fmt: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> Iterator[bytes]:
    if fmt == "csv":
        return _csv(columns, rows)
    if fmt == "jsonl":
        return _jsonl(columns, rows)
    if fmt == "json":
        return _json(columns, rows)
    if fmt == "parquet":
        return _parquet(columns, rows)
    raise ValueError(f"unknown format {fmt!r}")


def _batches(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


# csv would write these as Python reprs (or floats as repr, where cell writes JSON numbers)
_CONVERTED: frozenset[type] = frozenset({dict, list, tuple, bool, float})


def _csv(columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> Iterator[bytes]:
    """csv itself writes str, int and None (as "") exactly as ``cell`` would; only rows
    holding anything else pay for converting each value."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    plain = _CONVERTED.isdisjoint
    for batch in _batches(rows):
        writer.writerows(row if plain(map(type, row)) else [cell(v) for v in row] for row in batch)
        yield text.getvalue().encode()
        text.seek(0)
        text.truncate()
    if text.tell():
        yield text.getvalue().encode()


def _jsonl(columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> Iterator[bytes]:
    for batch in _batches(rows):
        yield b"".join(
            orjson.dumps(dict(zip(columns, row, strict=True)), default=str) + b"\n" for row in batch
        )


def _json(columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> Iterator[bytes]:
    first = True
    yield b"["
    for batch in _batches(rows):
        parts = [orjson.dumps(dict(zip(columns, row, strict=True)), default=str) for row in batch]
        yield (b"\n" if first else b",\n") + b",\n".join(parts)
        first = False
    yield b"\n]\n"


class _Sink:
    """A write-only file for pyarrow that hands back what was written since the last call."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False
        self.position = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def _parquet(columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> Iterator[bytes]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ConfigError(MISSING_PYARROW.replace("reading", "writing")) from exc
    is_int = [c.rsplit(".", 1)[-1] in _INT_FIELDS for c in columns]
    schema = pa.schema(
        [(c, pa.int64() if i else pa.string()) for c, i in zip(columns, is_int, strict=True)]
    )
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema)
    try:
        for batch in _batches(rows):
            arrays = [
                pa.array([row[n] if is_int[n] else _text(row[n]) for row in batch], schema[n].type)
                for n in range(len(columns))
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            yield sink.take()
    finally:
        writer.close()
    yield sink.take()


def _text(value: Any) -> str | None:
    return None if value is None else cell(value)
