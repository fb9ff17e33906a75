"""Batch inference job resources of the local backend: create, render, delete, and the worker's
claim/commit primitives (a lease in SQLite so that two processes never run one job at once).

Called by the job routes and by ``worker``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from batchops.jsonvalues import params_problem, value_problem
from batchops.local import datasets
from batchops.local.backend import Backend
from batchops.local.problems import ApiProblem, invalid, not_found
from batchops.local.timeutil import new_id, now, rfc3339, valid_id
from batchops.providers.fireworks.wire import (
    JOB_STATE_DELETING_CLEANING_UP,
    JOB_STATE_PENDING,
    JOB_STATE_RUNNING,
    JOB_STATE_VALIDATING,
    JOB_STATE_WRITING_RESULTS,
    TERMINAL_JOB_STATES,
    BatchInferenceJob,
    dataset_resource,
    job_resource,
    resource_id,
)

# A store-only state (never on the Fireworks wire): an OpenAI batch asked to cancel, which the
# worker ends as JOB_STATE_CANCELLED with its committed partial output.
JOB_STATE_CANCELLING = "JOB_STATE_CANCELLING"
ACTIVE_STATES = (
    JOB_STATE_VALIDATING,
    JOB_STATE_PENDING,
    JOB_STATE_RUNNING,
    JOB_STATE_WRITING_RESULTS,
    JOB_STATE_DELETING_CLEANING_UP,
    JOB_STATE_CANCELLING,
)
_ACTIVE_MARKS = ",".join("?" * len(ACTIVE_STATES))  # "?,?,..." for `state IN (...)`
# The fields a client may set; everything else in a create body is ignored.
WRITABLE = (
    "display_name",
    "model",
    "input_dataset_id",
    "output_dataset_id",
    "inference_parameters",
    "precision",
    "continued_from_job_name",
)
INHERITED = ("model", "input_dataset_id", "inference_parameters", "precision")
DEFAULT_PARAMETERS = {"maxTokens": 64, "extraBody": "{}"}  # what the real server fills in [LIVE]


@dataclass(frozen=True)
class JobKey:
    account: str
    id: str


def find_row(backend: Backend, account: str, job_id: str) -> Any:
    """The job's row, or None."""
    return backend.db.one("SELECT * FROM jobs WHERE account = ? AND id = ?", (account, job_id))


def get_row(backend: Backend, account: str, job_id: str) -> Any:
    row = find_row(backend, account, job_id)
    if row is None:
        raise not_found(f"batch inference job {job_resource(account, job_id)}")
    return row


def render(row: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        **orjson.loads(row["doc"]),
        "name": job_resource(row["account"], row["id"]),
        "state": row["state"],
        "status": orjson.loads(row["status"]) if row["status"] else {"code": "OK", "message": ""},
        "createTime": rfc3339(row["create_time"]),
        "updateTime": rfc3339(row["update_time"]),
        "expireTime": rfc3339(row["expire_time"]),
    }
    for column, key in (("progress", "jobProgress"), ("lifecycle", "lifecycle")):
        if row[column]:
            body[key] = orjson.loads(row[column])
    return body


def create(backend: Backend, account: str, job_id: str | None, body: Any) -> dict[str, Any]:
    job_id = _job_id(job_id)
    spec = _parse(body)
    if spec.continued_from_job_name:
        _inherit(backend, account, spec)
    doc = _document(backend, account, job_id, spec)
    stamp = now()
    with backend.db.transaction() as conn:  # no worker claims it before we read it back
        inserted = conn.execute(
            "INSERT OR IGNORE INTO jobs (account, id, doc, state, create_time, update_time, "
            "expire_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                account,
                job_id,
                orjson.dumps(doc),
                JOB_STATE_VALIDATING,
                stamp,
                stamp,
                stamp + backend.config.max_job_duration,
            ),
        ).rowcount
        row = conn.execute(
            "SELECT * FROM jobs WHERE account = ? AND id = ?", (account, job_id)
        ).fetchone()
    if not inserted:
        raise ApiProblem(
            "ALREADY_EXISTS", f"batch inference job {job_resource(account, job_id)} already exists"
        )
    created = render(row)
    backend.wake.set()
    return created


def _job_id(job_id: str | None) -> str:
    if job_id is None or job_id == "":
        return new_id("bij")
    if not valid_id(job_id):
        raise invalid(
            f"invalid batch inference job ID {job_id!r}: must match "
            "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
        )
    return job_id


# Fields the live service shows on jobs that this backend does not carry out; a create that sets
# one is refused rather than answered 200 with the field dropped (a system prompt changes answers).
UNSUPPORTED = ("systemPrompt", "system_prompt", "maxJobDuration", "max_job_duration", "placement")


def _parse(body: Any) -> BatchInferenceJob:
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    unsupported = next((key for key in UNSUPPORTED if body.get(key)), None)
    if unsupported is not None:
        raise ApiProblem("UNIMPLEMENTED", f"{unsupported} is not supported by the local backend")
    try:
        full = BatchInferenceJob.model_validate(body)
    except ValidationError as exc:
        raise invalid(f"invalid batch inference job: {exc.errors()[0]['msg']}") from None
    spec = BatchInferenceJob(**{name: getattr(full, name) for name in WRITABLE})
    _check_parameters(spec)
    return spec


def _check_parameters(spec: BatchInferenceJob) -> None:
    """Integer parameters in range, and extraBody as JSON text of an object the worker can send:
    refused with a 400, so a job that can never run is never stored (a NaN in extraBody once
    stopped the worker, and with it every account's jobs)."""
    params = spec.inference_parameters
    if params is None:
        return
    given = {"max_tokens": params.max_tokens, "top_k": params.top_k, "n": params.n}
    problem = params_problem({k: v for k, v in given.items() if v is not None})
    if problem is not None:
        raise invalid(f"inference_parameters: {problem}")
    text = params.extra_body
    if not text:
        return
    try:
        extra = orjson.loads(text)  # refuses NaN, Infinity and nesting past 1,024 levels
    except orjson.JSONDecodeError as exc:
        raise invalid(f"inference_parameters.extra_body is not valid JSON: {exc}") from None
    if not isinstance(extra, dict):
        raise invalid("inference_parameters.extra_body must be a JSON object")
    problem = value_problem(extra) or params_problem(extra)
    if problem is not None:
        raise invalid(f"inference_parameters.extra_body: {problem}")


def _inherit(backend: Backend, account: str, spec: BatchInferenceJob) -> None:
    """A continuation takes model, input and parameters from the job it continues, when omitted."""
    previous_id = resource_id(spec.continued_from_job_name or "")
    row = find_row(backend, account, previous_id)
    if row is None:
        raise invalid(
            f"continued_from_job_name: job {job_resource(account, previous_id)} not found"
        )
    if row["state"] not in TERMINAL_JOB_STATES:
        raise ApiProblem(
            "FAILED_PRECONDITION",
            f"job {job_resource(account, previous_id)} is "
            f"{row['state']}; only a finished job can be continued",
        )
    previous = BatchInferenceJob.model_validate(orjson.loads(row["doc"]))
    spec.continued_from_job_name = job_resource(account, previous_id)
    for name in INHERITED:
        if getattr(spec, name) is None:
            setattr(spec, name, getattr(previous, name))


def _document(
    backend: Backend, account: str, job_id: str, spec: BatchInferenceJob
) -> dict[str, Any]:
    if not spec.model:
        raise invalid("model is required")
    if not spec.input_dataset_id:
        raise invalid("input_dataset_id is required")
    spec.input_dataset_id = dataset_resource(account, _dataset_id(spec.input_dataset_id))
    spec.output_dataset_id = dataset_resource(account, _output_id(backend, account, job_id, spec))
    doc = spec.to_wire()
    doc["inferenceParameters"] = {**DEFAULT_PARAMETERS, **doc.get("inferenceParameters", {})}
    doc.setdefault("continuedFromJobName", "")
    doc.setdefault("precision", "PRECISION_UNSPECIFIED")
    doc.setdefault("displayName", "")
    return {**doc, "createdBy": "local@batchops"}


def _dataset_id(value: str) -> str:
    dataset_id = resource_id(value)
    if not valid_id(dataset_id):
        raise invalid(f"invalid dataset ID {value!r}")
    return dataset_id


def _output_id(backend: Backend, account: str, job_id: str, spec: BatchInferenceJob) -> str:
    """The given output dataset (which must not exist yet), else ``<job>-output``."""
    if spec.output_dataset_id:
        output = _dataset_id(spec.output_dataset_id)
        if datasets.exists(backend, account, output):
            raise ApiProblem(
                "ALREADY_EXISTS",
                f"output dataset {dataset_resource(account, output)} already exists",
            )
        return output
    output = f"{job_id}-output"
    if not valid_id(output) or datasets.exists(backend, account, output):
        output = new_id("bij")
    return output


def delete(backend: Backend, account: str, job_id: str) -> None:
    """Terminal or unclaimed jobs go at once; a job a live worker runs is marked and that worker
    removes it at its next batch boundary (or whoever takes over its lapsed lease)."""
    row = get_row(backend, account, job_id)
    leased = row["owner"] is not None and row["lease_expiry"] > now()
    if row["state"] in TERMINAL_JOB_STATES or not leased:
        backend.db.run("DELETE FROM jobs WHERE account = ? AND id = ?", (account, job_id))
        return
    backend.db.run(
        "UPDATE jobs SET state = ?, update_time = ? WHERE account = ? AND id = ?",
        (JOB_STATE_DELETING_CLEANING_UP, now(), account, job_id),
    )
    backend.wake.set()


# --- the worker's side -------------------------------------------------------------------------


def runnable(backend: Backend, owner: str) -> list[JobKey]:
    rows = backend.db.all(
        f"SELECT account, id FROM jobs WHERE state IN ({_ACTIVE_MARKS}) AND "  # noqa: S608 - fixed marks
        "(owner IS NULL OR lease_expiry < ? OR owner = ?) ORDER BY seq LIMIT 20",
        (*ACTIVE_STATES, now(), owner),
    )
    return [JobKey(row["account"], row["id"]) for row in rows]


def claim(backend: Backend, key: JobKey, owner: str) -> bool:
    """Take the job's lease if it is free, lapsed or already ours (atomic across processes)."""
    stamp = now()
    return (
        backend.db.run(
            f"UPDATE jobs SET owner = ?, lease_expiry = ? WHERE account = ? AND id = ? "  # noqa: S608
            f"AND state IN ({_ACTIVE_MARKS}) AND (owner IS NULL OR lease_expiry < ? OR owner = ?)",
            (
                owner,
                stamp + backend.config.lease_seconds,
                key.account,
                key.id,
                *ACTIVE_STATES,
                stamp,
                owner,
            ),
        )
        == 1
    )


def commit(
    backend: Backend, key: JobKey, owner: str, *, cancelling: bool = False, **columns: Any
) -> bool:
    """Write columns and renew the lease, only while we own the job and it is not being deleted
    or cancelled (``cancelling=True``: only while it is being cancelled).

    False means stop: the lease was lost, or a DELETE or a cancel arrived.
    """
    for name in ("status", "progress", "lifecycle"):
        if name in columns and not isinstance(columns[name], bytes | None):
            columns[name] = orjson.dumps(columns[name])
    stamp = now()
    columns |= {"lease_expiry": stamp + backend.config.lease_seconds, "update_time": stamp}
    assignments = ", ".join(f"{name} = ?" for name in columns)
    guard, states = (
        ("state = ?", (JOB_STATE_CANCELLING,))
        if cancelling
        else ("state NOT IN (?, ?)", (JOB_STATE_DELETING_CLEANING_UP, JOB_STATE_CANCELLING))
    )
    return (
        backend.db.run(
            f"UPDATE jobs SET {assignments} WHERE account = ? AND id = ? AND owner = ? "  # noqa: S608
            f"AND {guard}",
            (*columns.values(), key.account, key.id, owner, *states),
        )
        == 1
    )


def release(backend: Backend, key: JobKey, owner: str) -> None:
    backend.db.run(
        "UPDATE jobs SET owner = NULL, lease_expiry = 0 WHERE account = ? AND id = ? AND owner = ?",
        (key.account, key.id, owner),
    )


def release_all(backend: Backend, owner: str) -> int:
    """Hand back every lease ``owner`` holds (a graceful stop); returns how many."""
    return backend.db.run(
        "UPDATE jobs SET owner = NULL, lease_expiry = 0 WHERE owner = ?", (owner,)
    )


def finish_delete(backend: Backend, key: JobKey) -> None:
    backend.db.run(
        "DELETE FROM jobs WHERE account = ? AND id = ? AND state = ?",
        (key.account, key.id, JOB_STATE_DELETING_CLEANING_UP),
    )
