"""A job's output dataset: created when the job starts running, appended per batch, finalised
(truncated to the committed offsets, marked READY) when the job ends. Used by ``worker``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import orjson

from batchops.local import datasets, jobs
from batchops.local.backend import Backend
from batchops.local.problems import ApiProblem
from batchops.providers.fireworks.wire import (
    DATASET_STATE_READY,
    DATASET_STATE_UPLOADING,
    ERRORS_FILE,
    RESULTS_FILE,
    job_resource,
    resource_id,
)


def output_id(row: Any) -> str:
    return resource_id(orjson.loads(row["doc"])["outputDatasetId"])


def paths(backend: Backend, row: Any) -> tuple[Path, Path]:
    dataset_id = output_id(row)
    return (
        backend.file_path(row["account"], dataset_id, RESULTS_FILE),
        backend.file_path(row["account"], dataset_id, ERRORS_FILE),
    )


def ensure(backend: Backend, row: Any) -> None:
    """Create the output dataset and its two empty files (idempotent: a restart may repeat it)."""
    account, dataset_id = row["account"], output_id(row)
    doc = {
        "sourceJobName": job_resource(account, row["id"]),
        "exampleCount": "0",
        "displayName": f"{row['id']} output",
    }
    with contextlib.suppress(ApiProblem):  # already created by an earlier attempt
        datasets.insert(backend, account, dataset_id, doc, DATASET_STATE_UPLOADING)
    for path in paths(backend, row):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def truncate(backend: Backend, row: Any) -> None:
    """Drop bytes written after the last committed batch (a crash between write and commit)."""
    for path, offset in zip(
        paths(backend, row), (row["out_offset"], row["err_offset"]), strict=True
    ):
        with path.open("r+b") as handle:
            handle.truncate(offset)


def finalise(backend: Backend, row: Any, rows_out: int) -> None:
    ensure(backend, row)
    truncate(backend, row)
    account, dataset_id = row["account"], output_id(row)
    for path in paths(backend, row):
        datasets.record_upload(
            backend, account, dataset_id, path.name, path.stat().st_size, registered=None
        )
    datasets.update(
        backend,
        account,
        dataset_id,
        state=DATASET_STATE_READY,
        fields={"exampleCount": str(rows_out)},
    )


def successful_ids(backend: Backend, account: str, dataset_id: str) -> set[str]:
    """custom_ids with a response in a dataset's results file."""
    path = backend.file_path(account, dataset_id, RESULTS_FILE)
    if not path.exists():
        return set()
    with path.open("rb") as handle:
        return {orjson.loads(line)["custom_id"] for line in handle if line.strip()}


def chain(backend: Backend, account: str, continued_from: str) -> list[Any]:
    """The job rows a continuation descends from, nearest first (deleted links end the chain)."""
    found: list[Any] = []
    name = continued_from
    while name and len(found) < 1000:
        row = jobs.find_row(backend, account, resource_id(name))
        if row is None:
            break
        found.append(row)
        name = orjson.loads(row["doc"]).get("continuedFromJobName", "")
    return found
