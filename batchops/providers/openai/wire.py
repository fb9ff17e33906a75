"""msgspec Structs of the OpenAI Batch, File and list objects, as the client reads them.

Lenient on purpose: every field but ``id`` is optional, unknown fields are ignored and numbers
sent as strings are accepted (``strict=False``), so servers that speak the API loosely
(empty-string file IDs, missing ``has_more``) still parse. Structs rather than pydantic models:
a page of 100 ended batches decodes several times faster, which is most of an observe pass
(bench/openai_plan.py). ``decode`` is what the client calls; the shared constants (states, caps,
error codes) are in ``batchops.wire_openai``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


class RequestCounts(_Wire):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchErrorEntry(_Wire):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(_Wire):
    data: list[BatchErrorEntry] = msgspec.field(default_factory=list)


class InputDetails(_Wire):
    cached_tokens: int = 0


class Usage(_Wire):
    input_tokens: int = 0
    output_tokens: int = 0
    input_tokens_details: InputDetails | None = None


class Batch(_Wire):
    id: str
    status: str = ""
    endpoint: str = ""
    input_file_id: str = ""
    created_at: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: BatchErrors | None = None
    request_counts: RequestCounts | None = None
    metadata: dict[str, Any] | None = None
    model: str | None = None
    usage: Usage | None = None
    in_progress_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelled_at: int | None = None
    expires_at: int | None = None

    def __post_init__(self) -> None:
        # null, a missing key and "" mean the same: no file (reference §9).
        if not self.output_file_id:
            self.output_file_id = None
        if not self.error_file_id:
            self.error_file_id = None
        meta = self.metadata
        if meta and not all(type(v) is str for v in meta.values()):
            self.metadata = {str(k): str(v) for k, v in meta.items() if v is not None}

    @property
    def updated_at(self) -> int:
        return max(
            self.created_at,
            self.in_progress_at or 0,
            self.completed_at or 0,
            self.failed_at or 0,
            self.expired_at or 0,
            self.cancelled_at or 0,
        )

    @property
    def error_codes(self) -> list[str]:
        return [e.code or "" for e in self.errors.data] if self.errors else []

    @property
    def error_message(self) -> str:
        if not self.errors:  # most batches: no errors object (a pass asks for every batch)
            return ""
        return "; ".join(f"{e.code}: {e.message}" for e in self.errors.data[:3])


class FileObject(_Wire):
    id: str
    bytes: int = 0
    filename: str = ""
    purpose: str = ""
    created_at: int = 0


class BatchList(_Wire):
    data: list[Batch] = msgspec.field(default_factory=list)
    has_more: bool | None = None
    last_id: str | None = None


class FileList(_Wire):
    data: list[FileObject] = msgspec.field(default_factory=list)
    has_more: bool | None = None


class FileDeleted(_Wire):
    id: str
    deleted: bool = False


_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    found = _DECODERS.get(kind)
    if found is None:  # built at first use, once per kind (start-up)
        found = _DECODERS[kind] = msgspec.json.Decoder(kind, strict=False)
    return found


def decode(kind: type[T], content: bytes) -> T:
    """``content`` as a ``kind``; raises ``ValueError`` when it is not one."""
    try:
        decoded: T = _decoder(kind).decode(content)
    except msgspec.MsgspecError as exc:
        raise ValueError(str(exc)) from exc
    return decoded
