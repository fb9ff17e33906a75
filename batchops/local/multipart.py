"""Streaming multipart/form-data for ``:upload``, on python-multipart (the parser Starlette uses).

The ``file`` part goes straight to disk chunk by chunk, never whole into memory; Starlette's own
``request.form()`` would spool it to a temporary file first and cost a second copy. Called by
``routes_datasets``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from batchops.local.problems import invalid

FIELD_LIMIT = 4096  # bytes kept of a non-file part


def boundary_of(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise invalid("expected multipart/form-data with a boundary")
    return boundary


class _FilePart:
    """Parser callbacks that copy the part named ``file`` into ``sink``."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.fields: dict[str, str] = {}  # the other (small) parts: OpenAI's ``purpose``
        self.field_name: str | None = None
        self.field_value = b""
        self.header_field = b""
        self.disposition = b""
        self.in_file = False
        self.found = False
        self.filename = "upload.jsonl"
        self.size = 0
        self.complete = False  # the closing boundary arrived; finalize() alone does not check it

    def on_end(self) -> None:
        self.complete = True

    def on_part_begin(self) -> None:
        self.disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field = data[start:end].lower()

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        if self.header_field == b"content-disposition":
            self.disposition += data[start:end]

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        self.in_file = options.get(b"name") == b"file" and not self.found
        name = options.get(b"name")
        self.field_name = name.decode(errors="replace") if name and not self.in_file else None
        self.field_value = b""
        if self.in_file:
            self.found = True
            self.filename = (options.get(b"filename") or b"upload.jsonl").decode(errors="replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.size += self.sink.write(data[start:end])
        elif self.field_name is not None and len(self.field_value) < FIELD_LIMIT:
            self.field_value += data[start:end]

    def on_part_end(self) -> None:
        if self.field_name is not None and len(self.fields) < 32:
            self.fields[self.field_name] = self.field_value[:FIELD_LIMIT].decode(errors="replace")
        self.in_file = False
        self.field_name = None


async def save_file_part(
    stream: AsyncIterator[bytes], boundary: bytes, sink: BinaryIO
) -> tuple[str, int]:
    """Copy the part named ``file`` into ``sink``; return (its filename, its size)."""
    filename, size, _ = await save_form(stream, boundary, sink)
    return filename, size


async def save_form(
    stream: AsyncIterator[bytes], boundary: bytes, sink: BinaryIO
) -> tuple[str, int, dict[str, str]]:
    """As ``save_file_part``, plus the other parts' values (each cut at FIELD_LIMIT bytes)."""
    part = _FilePart(sink)
    callbacks = {name: getattr(part, name) for name in dir(part) if name.startswith("on_")}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise invalid(f"malformed multipart body: {exc}") from exc
    if not part.complete:
        raise invalid("truncated multipart body")
    if not part.found:
        raise invalid("the multipart body has no 'file' field")
    return part.filename, part.size, part.fields
