"""Dataset resources of the local backend: rows in SQLite, files on disk.

Called by the dataset routes and by the worker (which creates and fills output datasets).
"""

from __future__ import annotations

import shutil
from typing import Any

import orjson

from batchops.local.backend import Backend
from batchops.local.problems import ApiProblem, not_found
from batchops.local.timeutil import now, rfc3339
from batchops.providers.fireworks.wire import DATASET_STATE_READY, dataset_resource

# Read-only fields the real service always answers with [LIVE Step 1].
DEFAULTS: dict[str, Any] = {
    "encryptionState": "ENCRYPTION_STATE_PLAINTEXT",
    "estimatedTokenCount": "0",
    "format": "FORMAT_UNSPECIFIED",
    "averageTurnCount": 0,
    "sourceJobName": "",
    "createdBy": "local@batchops",
}


def insert(
    backend: Backend, account: str, dataset_id: str, doc: dict[str, Any], state: str
) -> None:
    stamp = now()
    sql = "INSERT OR IGNORE INTO datasets VALUES (?, ?, ?, ?, ?, ?)"
    args = (account, dataset_id, orjson.dumps({**DEFAULTS, **doc}), state, stamp, stamp)
    if backend.db.run(sql, args) == 0:
        raise ApiProblem(
            "ALREADY_EXISTS", f"dataset {dataset_resource(account, dataset_id)} already exists"
        )


def exists(backend: Backend, account: str, dataset_id: str) -> bool:
    found = backend.db.one(
        "SELECT 1 FROM datasets WHERE account = ? AND id = ?", (account, dataset_id)
    )
    return found is not None


def get_row(backend: Backend, account: str, dataset_id: str) -> Any:
    row = backend.db.one(
        "SELECT * FROM datasets WHERE account = ? AND id = ?", (account, dataset_id)
    )
    if row is None:
        raise not_found(f"dataset {dataset_resource(account, dataset_id)}")
    return row


def render(row: Any) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(row["doc"])
    return {
        **doc,
        "name": dataset_resource(row["account"], row["id"]),
        "state": row["state"],
        "status": {"code": "OK", "message": ""},
        "createTime": rfc3339(row["create_time"]),
        "updateTime": rfc3339(row["update_time"]),
    }


def update(
    backend: Backend,
    account: str,
    dataset_id: str,
    *,
    state: str | None = None,
    fields: dict[str, Any] | None = None,
) -> None:
    row = get_row(backend, account, dataset_id)
    doc = {**orjson.loads(row["doc"]), **(fields or {})}
    backend.db.run(
        "UPDATE datasets SET doc = ?, state = ?, update_time = ? WHERE account = ? AND id = ?",
        (orjson.dumps(doc), state or row["state"], now(), account, dataset_id),
    )
    backend.wake.set()  # a job may be waiting for this dataset to be READY


def delete(backend: Backend, account: str, dataset_id: str) -> None:
    get_row(backend, account, dataset_id)
    with backend.db.transaction() as conn:
        conn.execute("DELETE FROM datasets WHERE account = ? AND id = ?", (account, dataset_id))
        conn.execute(
            "DELETE FROM dataset_files WHERE account = ? AND dataset_id = ?", (account, dataset_id)
        )
    shutil.rmtree(backend.dataset_dir(account, dataset_id), ignore_errors=True)


def register_files(backend: Backend, account: str, dataset_id: str, sizes: dict[str, int]) -> None:
    """:getUploadEndpoint overwrites the registered file set [SDK-UPLOAD]."""
    with backend.db.transaction() as conn:
        conn.execute(
            "DELETE FROM dataset_files WHERE account = ? AND dataset_id = ?", (account, dataset_id)
        )
        conn.executemany(
            "INSERT INTO dataset_files VALUES (?, ?, ?, ?, NULL)",
            [(account, dataset_id, name, size) for name, size in sizes.items()],
        )


def record_upload(
    backend: Backend,
    account: str,
    dataset_id: str,
    filename: str,
    size: int,
    *,
    registered: int | None,
) -> None:
    backend.db.run(
        "INSERT OR REPLACE INTO dataset_files VALUES (?, ?, ?, ?, ?)",
        (account, dataset_id, filename, registered, size),
    )


def files(backend: Backend, account: str, dataset_id: str) -> list[Any]:
    return backend.db.all(
        "SELECT filename, registered_size, uploaded_size FROM dataset_files "
        "WHERE account = ? AND dataset_id = ? ORDER BY filename",
        (account, dataset_id),
    )


def validate_upload(backend: Backend, account: str, dataset_id: str) -> None:
    """Every registered file must be uploaded, non-empty and of its registered size."""
    get_row(backend, account, dataset_id)
    registered = files(backend, account, dataset_id)
    if not registered:
        raise ApiProblem("FAILED_PRECONDITION", "no files have been uploaded to this dataset")
    for row in registered:
        _check_uploaded(row)
    update(backend, account, dataset_id, state=DATASET_STATE_READY)


def _check_uploaded(row: Any) -> None:
    name, want, got = row["filename"], row["registered_size"], row["uploaded_size"]
    if got is None:
        raise ApiProblem("FAILED_PRECONDITION", f"file {name} has not been uploaded")
    if got == 0:
        raise ApiProblem("FAILED_PRECONDITION", f"file {name} is empty")
    if want is not None and want != got:
        raise ApiProblem("FAILED_PRECONDITION", f"file {name} has {got} bytes, expected {want}")
