"""OpenAI File objects of the local backend: uploads (``purpose=batch`` input files) and the output
and error files of finished batches, one table (``openai_files``) pointing at files on disk.

An upload is stored as a one-file dataset of the reserved account ``OPENAI_ACCOUNT``, so the worker
reads it exactly as it reads a Fireworks dataset; a batch's output and error files are the two
files of its output dataset. Used by ``routes_openai`` and ``openai_worker``.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
from pathlib import Path
from typing import Any

import orjson

from batchops.local import datasets
from batchops.local.backend import Backend
from batchops.local.openai_errors import bad_request, not_found
from batchops.providers.fireworks.wire import DATASET_STATE_READY
from batchops.wire_openai import (
    BATCH_FILE_TTL,
    PURPOSE_BATCH,
    PURPOSE_BATCH_OUTPUT,
)

OPENAI_ACCOUNT = "_openai"  # the store's account for OpenAI files and batches (not a valid ID)
INPUT_NAME = "input.jsonl"  # an upload's name on disk; the client's filename is kept in the table
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_LISTED_FILES = 20_000  # rendered File objects kept for listings (about 250 bytes each)


def new_file_id() -> str:
    return "file-" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


@functools.lru_cache(maxsize=65_536)  # a listing asks it of every file of every batch it shows
def output_file_id(batch_id: str, role: str) -> str:
    """Deterministic, so a finalisation repeated after a restart names the same file."""
    return "file-" + hashlib.sha256(f"{batch_id}\0{role}".encode()).hexdigest()[:22]


def render(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "file",
        "bytes": row["bytes"],
        "created_at": row["created_at"],
        "filename": row["filename"],
        "purpose": row["purpose"],
        "status": "processed",
        "expires_at": row["expires_at"],
        "status_details": None,
    }


def render_page(rows: list[Any]) -> list[orjson.Fragment]:
    """A listing's File objects as JSON, each rendered once while its row is unchanged: the
    files list is read whole by every observe pass (to tell deleted jobs apart)."""
    return [_listed(row) for row in rows]


@functools.lru_cache(maxsize=_LISTED_FILES)
def _listed(row: Any) -> orjson.Fragment:
    """Keyed by the whole row (a Row hashes and compares by its values): any change is a miss."""
    return orjson.Fragment(orjson.dumps(render(row)))


def get_row(backend: Backend, file_id: str) -> Any:
    row = backend.db.one("SELECT * FROM openai_files WHERE id = ?", (file_id,))
    if row is None:
        raise not_found("file", file_id)
    return row


def path_of(backend: Backend, row: Any) -> Path:
    return backend.file_path(OPENAI_ACCOUNT, row["dataset_id"], row["stored_name"])


def add_upload(
    backend: Backend, file_id: str, purpose: str, filename: str, size: int, ttl: int | None
) -> Any:
    """Record an upload already moved to its place (``file_path(OPENAI_ACCOUNT, file_id,
    INPUT_NAME)``)."""
    created = int(time.time())
    if ttl is None and purpose == PURPOSE_BATCH:
        ttl = BATCH_FILE_TTL
    datasets.insert(
        backend, OPENAI_ACCOUNT, file_id, {"displayName": filename}, DATASET_STATE_READY
    )
    datasets.record_upload(backend, OPENAI_ACCOUNT, file_id, INPUT_NAME, size, registered=None)
    backend.db.run(
        "INSERT INTO openai_files (id, purpose, filename, bytes, created_at, expires_at, "
        "dataset_id, stored_name, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        (
            file_id,
            purpose,
            filename,
            size,
            created,
            created + ttl if ttl else None,
            file_id,
            INPUT_NAME,
        ),
    )
    return get_row(backend, file_id)


def add_output(backend: Backend, batch_id: str, role: str, dataset_id: str, stored: str) -> None:
    """Register (or refresh) a batch's output or error file; an empty one gets no File."""
    path = backend.file_path(OPENAI_ACCOUNT, dataset_id, stored)
    size = path.stat().st_size if path.exists() else 0
    file_id = output_file_id(batch_id, role)
    if size == 0:
        backend.db.run("DELETE FROM openai_files WHERE id = ?", (file_id,))
        return
    backend.db.run(
        "INSERT INTO openai_files (id, purpose, filename, bytes, created_at, expires_at, "
        "dataset_id, stored_name, batch_id) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET bytes = excluded.bytes",
        (
            file_id,
            PURPOSE_BATCH_OUTPUT,
            f"{batch_id}_{role}.jsonl",
            size,
            int(time.time()),
            dataset_id,
            stored,
            batch_id,
        ),
    )


def batch_files(backend: Backend, batch_id: str) -> dict[str, str]:
    """{"output": id, "error": id} for the files a finished batch has (absent when empty)."""
    return files_of_batches(backend, [batch_id]).get(batch_id, {})


def files_of_batches(backend: Backend, batch_ids: list[str]) -> dict[str, dict[str, str]]:
    """``batch_files`` for a page of batches in one query (a listing asks once, not per batch)."""
    found: dict[str, dict[str, str]] = {}
    if not batch_ids:
        return found
    marks = ",".join("?" * len(batch_ids))
    rows = backend.db.all(
        f"SELECT id, batch_id FROM openai_files WHERE batch_id IN ({marks})",  # noqa: S608
        tuple(batch_ids),
    )
    for row in rows:
        for role in ("output", "error"):
            if row["id"] == output_file_id(row["batch_id"], role):
                found.setdefault(row["batch_id"], {})[role] = row["id"]
    return found


def delete(backend: Backend, file_id: str, *, in_use_by: str | None) -> None:
    row = get_row(backend, file_id)
    if in_use_by is not None:
        raise bad_request(
            f"File {file_id} is the input of batch {in_use_by}, which is still running.",
            param="file_id",
        )
    backend.db.run("DELETE FROM openai_files WHERE id = ?", (file_id,))
    if row["batch_id"] is None:
        datasets.delete(backend, OPENAI_ACCOUNT, row["dataset_id"])
    else:
        path_of(backend, row).unlink(missing_ok=True)


def page(
    backend: Backend, *, after: str | None, limit: int, ascending: bool, purpose: str | None
) -> tuple[list[Any], bool]:
    """One page of files in creation order (newest first unless ``ascending``), and has_more."""
    op, direction = (">", "ASC") if ascending else ("<", "DESC")
    start = 0 if ascending else 2**62
    if after:
        found = backend.db.one("SELECT seq FROM openai_files WHERE id = ?", (after,))
        if found is None:
            raise bad_request(f"No file found with id '{after}'.", param="after")
        start = found["seq"]
    where = f"seq {op} ?" + (" AND purpose = ?" if purpose else "")
    args: tuple[Any, ...] = (start, purpose, limit + 1) if purpose else (start, limit + 1)
    rows = backend.db.all(
        f"SELECT * FROM openai_files WHERE {where} ORDER BY seq {direction} LIMIT ?",  # noqa: S608
        args,
    )
    return rows[:limit], len(rows) > limit
