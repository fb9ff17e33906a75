"""OpenAI Batch objects of the local backend: create, render, list and cancel.

A batch is a row of the same ``jobs`` table the Fireworks jobs live in (account ``OPENAI_ACCOUNT``,
an ``openai`` section in its doc), so the same worker, leases, cursor and offsets run it and a
restart neither loses nor repeats rows. Its input is the upload's dataset, its output dataset holds
the output and error files. Used by ``routes_openai``; ``openai_worker`` does the batch's own steps.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Any

import orjson

from batchops.local import jobs, openai_quota
from batchops.local.backend import Backend
from batchops.local.openai_errors import NO_RETRY, OpenAIProblem, bad_request, not_found
from batchops.local.openai_files import OPENAI_ACCOUNT, batch_files, files_of_batches
from batchops.local.openai_files import get_row as get_file
from batchops.local.timeutil import now, rfc3339
from batchops.providers.fireworks.wire import (
    JOB_STATE_CANCELLED,
    JOB_STATE_COMPLETED,
    JOB_STATE_EXPIRED,
    JOB_STATE_FAILED,
    JOB_STATE_PENDING,
    JOB_STATE_RUNNING,
    JOB_STATE_VALIDATING,
    JOB_STATE_WRITING_RESULTS,
    dataset_resource,
)
from batchops.wire_openai import (
    BATCH_CANCELLED,
    BATCH_CANCELLING,
    BATCH_COMPLETED,
    BATCH_EXPIRED,
    BATCH_FAILED,
    BATCH_FINALIZING,
    BATCH_IN_PROGRESS,
    BATCH_VALIDATING,
    CHAT_ENDPOINT,
    COMPLETION_WINDOW,
    COMPLETIONS_ENDPOINT,
    ERR_INVALID_REQUEST,
    METADATA_MAX_KEY,
    METADATA_MAX_PAIRS,
    METADATA_MAX_VALUE,
    PURPOSE_BATCH,
    batch_error,
)

STATUS = {
    JOB_STATE_VALIDATING: BATCH_VALIDATING,
    JOB_STATE_PENDING: BATCH_IN_PROGRESS,
    JOB_STATE_RUNNING: BATCH_IN_PROGRESS,
    JOB_STATE_WRITING_RESULTS: BATCH_FINALIZING,
    jobs.JOB_STATE_CANCELLING: BATCH_CANCELLING,
    JOB_STATE_COMPLETED: BATCH_COMPLETED,
    JOB_STATE_FAILED: BATCH_FAILED,
    JOB_STATE_EXPIRED: BATCH_EXPIRED,
    JOB_STATE_CANCELLED: BATCH_CANCELLED,
}
ENDPOINTS = (CHAT_ENDPOINT, COMPLETIONS_ENDPOINT)
CANCELLABLE = (
    JOB_STATE_VALIDATING,
    JOB_STATE_PENDING,
    JOB_STATE_RUNNING,
    JOB_STATE_WRITING_RESULTS,
)
# Batches whose enqueued tokens count against the per-model quota (validated, not yet ended).
IN_FLIGHT = (
    JOB_STATE_PENDING,
    JOB_STATE_RUNNING,
    JOB_STATE_WRITING_RESULTS,
    jobs.JOB_STATE_CANCELLING,
)


_ENDED = (BATCH_COMPLETED, BATCH_EXPIRED, BATCH_CANCELLED, BATCH_FAILED)
_ENDED_STATES = frozenset(state for state, status in STATUS.items() if status in _ENDED)


def is_batch(doc: dict[str, Any]) -> bool:
    return "openai" in doc


def create(backend: Backend, body: dict[str, Any]) -> dict[str, Any]:
    spec = _spec(backend, body)
    batch_id = f"batch_{uuid.uuid4().hex}"
    doc = {
        "model": "",  # set from the input file's lines when the batch is validated
        "inputDatasetId": dataset_resource(OPENAI_ACCOUNT, spec["input_file_id"]),
        "outputDatasetId": dataset_resource(OPENAI_ACCOUNT, f"{batch_id}-output"),
        "openai": spec,
    }
    measured = None
    if backend.config.openai_enqueued_token_limit is not None:
        upload = get_file(backend, spec["input_file_id"])
        measured = openai_quota.measure(backend, upload, spec["endpoint"])
        doc["model"] = measured[0]
    with backend.db.transaction() as conn:  # no worker advances it before we read it back
        refusal = openai_quota.refusal(backend, *measured) if measured else None
        conn.execute(
            "INSERT INTO jobs (account, id, doc, state, status, progress, lifecycle, create_time, "
            "update_time, expire_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                OPENAI_ACCOUNT,
                batch_id,
                orjson.dumps(doc),
                *_initial(refusal, measured),
                now(),
                now(),
                now() + backend.config.max_job_duration,
            ),
        )
        row = conn.execute(
            "SELECT * FROM jobs WHERE account = ? AND id = ?", (OPENAI_ACCOUNT, batch_id)
        ).fetchone()
    backend.wake.set()
    return render(backend, row)


def _initial(
    refusal: dict[str, Any] | None, measured: tuple[str, int] | None
) -> tuple[str, bytes | None, bytes | None, bytes | None]:
    """(state, status, progress, lifecycle) of a new batch: validating, or failed over quota."""
    if refusal is None:
        progress = orjson.dumps({"enqueuedTokens": measured[1]}) if measured else None
        return JOB_STATE_VALIDATING, None, progress, None
    status = {"code": "RESOURCE_EXHAUSTED", "message": refusal["message"], "errors": [refusal]}
    lifecycle = {"endTime": rfc3339(now())}
    return JOB_STATE_FAILED, orjson.dumps(status), None, orjson.dumps(lifecycle)


def _spec(backend: Backend, body: dict[str, Any]) -> dict[str, Any]:
    for name in ("input_file_id", "endpoint", "completion_window"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise bad_request(
                f"Missing required parameter: '{name}'.",
                param=name,
                code="missing_required_parameter",
            )
    if body["endpoint"] not in ENDPOINTS:
        raise bad_request(
            f"Invalid endpoint {body['endpoint']!r}: the local backend supports "
            f"{', '.join(ENDPOINTS)}.",
            param="endpoint",
            code="invalid_value",
        )
    if body["completion_window"] != COMPLETION_WINDOW:
        raise bad_request(
            "completion_window must be '24h'.", param="completion_window", code="invalid_value"
        )
    try:
        upload = get_file(backend, body["input_file_id"])
    except OpenAIProblem:
        raise bad_request(
            f"No file found with id '{body['input_file_id']}'.", param="input_file_id"
        ) from None
    if upload["purpose"] != PURPOSE_BATCH:
        raise bad_request("The input file must have purpose 'batch'.", param="input_file_id")
    return {
        "input_file_id": body["input_file_id"],
        "endpoint": body["endpoint"],
        "completion_window": COMPLETION_WINDOW,
        "metadata": _metadata(body.get("metadata")),
    }


def _metadata(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad_request("metadata must be an object of strings.", param="metadata")
    if len(raw) > METADATA_MAX_PAIRS:
        raise bad_request(
            f"metadata has {len(raw)} pairs; at most {METADATA_MAX_PAIRS} are allowed.",
            param="metadata",
            code="invalid_value",
        )
    for key, value in raw.items():
        if len(key) > METADATA_MAX_KEY or not isinstance(value, str):
            raise bad_request(
                f"Invalid metadata key {key[:80]!r}: keys are at most "
                f"{METADATA_MAX_KEY} characters and values are strings.",
                param="metadata",
                code="invalid_value",
            )
        if len(value) > METADATA_MAX_VALUE:
            raise bad_request(
                f"metadata value of {key!r} is over {METADATA_MAX_VALUE} characters.",
                param="metadata",
                code="invalid_value",
            )
    return dict(raw)


def get_row(backend: Backend, batch_id: str) -> Any:
    row = jobs.find_row(backend, OPENAI_ACCOUNT, batch_id)
    if row is None or not is_batch(orjson.loads(row["doc"])):
        raise not_found("batch", batch_id)
    return row


def _epoch(stamp: str | None) -> int | None:
    if not stamp:
        return None
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def render(backend: Backend, row: Any) -> dict[str, Any]:
    """The Batch object (a listing renders its page with ``render_page``)."""
    if row["state"] not in _ENDED_STATES:
        return _render(row, {})
    files = batch_files(backend, row["id"])
    # An ended batch's row no longer changes: its object is built once (listings repeat it
    # every pass), keyed by the whole row, so any change to the row is a new entry.
    key = tuple(row)
    cached = _ENDED_OBJECTS.get(key)
    if cached is None:
        if len(_ENDED_OBJECTS) >= _ENDED_CACHE_SIZE:
            _ENDED_OBJECTS.clear()
        cached = _ENDED_OBJECTS[key] = _render(row, {})
    return {**cached, "output_file_id": files.get("output"), "error_file_id": files.get("error")}


_ENDED_CACHE_SIZE = 20_000  # rendered ended batches kept (about 1 KB each)
_ENDED_OBJECTS: dict[tuple[Any, ...], dict[str, Any]] = {}


def _render(row: Any, files: dict[str, str]) -> dict[str, Any]:
    doc, state = orjson.loads(row["doc"]), row["state"]
    spec, status = doc["openai"], STATUS.get(row["state"], BATCH_IN_PROGRESS)
    lifecycle = orjson.loads(row["lifecycle"] or b"{}")
    progress = orjson.loads(row["progress"] or b"{}")
    problem = orjson.loads(row["status"] or b"{}")
    ended = _epoch(lifecycle.get("endTime"))
    return {
        "id": row["id"],
        "object": "batch",
        "endpoint": spec["endpoint"],
        "model": doc.get("model") or None,
        "errors": _errors(state, problem),
        "input_file_id": spec["input_file_id"],
        "completion_window": spec["completion_window"],
        "status": status,
        "output_file_id": files.get("output"),
        "error_file_id": files.get("error"),
        "created_at": int(row["create_time"]),
        "in_progress_at": _epoch(lifecycle.get("validatedTime")),
        "expires_at": int(row["expire_time"]),
        "finalizing_at": _finalizing_at(row, ended),
        "completed_at": ended if state == JOB_STATE_COMPLETED else None,
        "failed_at": ended if state == JOB_STATE_FAILED else None,
        "expired_at": ended if state == JOB_STATE_EXPIRED else None,
        "cancelling_at": _epoch(lifecycle.get("cancellingTime")),
        "cancelled_at": ended if state == JOB_STATE_CANCELLED else None,
        "request_counts": {
            "total": progress.get("totalInputRequests", 0),
            "completed": progress.get("successfullyProcessedRequests", 0),
            "failed": progress.get("failedRequests", 0),
        },
        "usage": _usage(progress),
        "metadata": spec["metadata"],
    }


def _errors(state: str, problem: dict[str, Any]) -> dict[str, Any] | None:
    data = problem.get("errors")
    if not data and state == JOB_STATE_FAILED:  # a failure outside validation (input deleted)
        data = [batch_error(ERR_INVALID_REQUEST, str(problem.get("message", "")))]
    return {"object": "list", "data": data} if data else None


def _finalizing_at(row: Any, ended: int | None) -> int | None:
    """The worker stamps no time on entering WRITING_RESULTS: while finalizing, the last update;
    once completed, the end (the local backend finalises in one step)."""
    if row["state"] == JOB_STATE_WRITING_RESULTS:
        return int(row["update_time"])
    return ended if row["state"] == JOB_STATE_COMPLETED else None


def _usage(progress: dict[str, Any]) -> dict[str, Any]:
    given, produced = progress.get("inputTokens", 0), progress.get("outputTokens", 0)
    return {
        "input_tokens": given,
        "input_tokens_details": {"cached_tokens": progress.get("cachedInputTokenCount", 0)},
        "output_tokens": produced,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": given + produced,
    }


def page(backend: Backend, *, after: str | None, limit: int) -> tuple[list[Any], bool]:
    """Newest first; ``after`` is the last batch ID of the previous page."""
    start = 2**62
    if after:
        found = jobs.find_row(backend, OPENAI_ACCOUNT, after)
        if found is None:
            raise bad_request(f"No batch found with id '{after}'.", param="after")
        start = found["seq"]
    rows = backend.db.all(PAGE_SQL, (OPENAI_ACCOUNT, start, limit + 1))
    return rows[:limit], len(rows) > limit


# A range scan of the (account, seq) index: no sort of the account's batches for each page.
PAGE_SQL = "SELECT * FROM jobs WHERE account = ? AND seq < ? ORDER BY seq DESC LIMIT ?"


def render_page(backend: Backend, rows: list[Any]) -> list[dict[str, Any] | orjson.Fragment]:
    """A listing's Batch objects, with one query for all their output and error files. An ended
    batch comes as its JSON, rendered once (``_listed``): a pass lists every batch again."""
    files_of = files_of_batches(backend, [row["id"] for row in rows])
    listed: list[dict[str, Any] | orjson.Fragment] = []
    for row in rows:
        files = files_of.get(row["id"], {})
        if row["state"] in _ENDED_STATES:
            listed.append(_listed(row, files.get("output"), files.get("error")))
        else:
            listed.append(_render(row, {}))
    return listed


@functools.lru_cache(maxsize=_ENDED_CACHE_SIZE)
def _listed(row: Any, output: str | None, error: str | None) -> orjson.Fragment:
    """An ended batch as JSON, keyed by its whole row and its files: a write to the row (by this
    process or another sharing the data folder) or a deleted file is a miss, never stale."""
    files = {role: file_id for role, file_id in (("output", output), ("error", error)) if file_id}
    return orjson.Fragment(orjson.dumps(_render(row, files)))


def cancel(backend: Backend, batch_id: str) -> dict[str, Any]:
    """validating / in_progress / finalizing -> cancelling (the worker finishes it as cancelled
    with the committed partial output); cancelling again is a no-op; an ended batch is a 409."""
    row = get_row(backend, batch_id)
    lifecycle = {**orjson.loads(row["lifecycle"] or b"{}"), "cancellingTime": _stamp()}
    marks = ",".join("?" * len(CANCELLABLE))
    changed = backend.db.run(
        f"UPDATE jobs SET state = ?, lifecycle = ?, update_time = ? WHERE account = ? AND id = ? "  # noqa: S608
        f"AND state IN ({marks})",
        (
            jobs.JOB_STATE_CANCELLING,
            orjson.dumps(lifecycle),
            now(),
            OPENAI_ACCOUNT,
            batch_id,
            *CANCELLABLE,
        ),
    )
    row = get_row(backend, batch_id)
    if not changed and row["state"] != jobs.JOB_STATE_CANCELLING:
        status = STATUS.get(row["state"], row["state"])
        raise OpenAIProblem(409, f"Cannot cancel a batch with status '{status}'.", headers=NO_RETRY)
    backend.wake.set()
    return render(backend, row)


def _stamp() -> str:
    return rfc3339(now()) or ""


def running_with_input(backend: Backend, file_id: str) -> str | None:
    """The ID of an unfinished batch reading ``file_id``, if any."""
    states = (JOB_STATE_VALIDATING, *IN_FLIGHT)
    marks = ",".join("?" * len(states))
    row = backend.db.one(
        f"SELECT id FROM jobs WHERE account = ? AND state IN ({marks}) AND "  # noqa: S608
        "json_extract(doc, '$.openai.input_file_id') = ? LIMIT 1",
        (OPENAI_ACCOUNT, *states, file_id),
    )
    return row["id"] if row else None
