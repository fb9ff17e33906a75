"""Pydantic models of the OpenAI Batch, File and list objects, as the client reads them.

Lenient on purpose: every field but ``id`` is optional and unknown fields are ignored, so servers
that speak the API loosely (empty-string file IDs, missing ``has_more``) still parse. The shared
constants (states, caps, error codes) are in ``batchops.wire_openai``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)  # built at first use (start-up)


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
    data: list[BatchErrorEntry] = []


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
    metadata: dict[str, str] | None = None
    model: str | None = None
    usage: Usage | None = None
    in_progress_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelled_at: int | None = None
    expires_at: int | None = None

    @property
    def updated_at(self) -> int:
        stamps = (
            self.created_at,
            self.in_progress_at,
            self.completed_at,
            self.failed_at,
            self.expired_at,
            self.cancelled_at,
        )
        return max(s or 0 for s in stamps)

    @field_validator("output_file_id", "error_file_id")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        # null, a missing key and "" mean the same: no file (reference §9).
        return value or None

    @field_validator("metadata", mode="before")
    @classmethod
    def _string_values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items() if v is not None}
        return value

    @property
    def error_codes(self) -> list[str]:
        return [e.code or "" for e in (self.errors.data if self.errors else [])]

    @property
    def error_message(self) -> str:
        entries = self.errors.data if self.errors else []
        return "; ".join(f"{e.code}: {e.message}" for e in entries[:3])


class FileObject(_Wire):
    id: str
    bytes: int = 0
    filename: str = ""
    purpose: str = ""
    created_at: int = 0


class BatchList(_Wire):
    data: list[Batch] = []
    has_more: bool | None = None
    last_id: str | None = None


class FileList(_Wire):
    data: list[FileObject] = []
    has_more: bool | None = None


class FileDeleted(_Wire):
    id: str
    deleted: bool = False
