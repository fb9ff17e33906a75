"""The worker's steps that differ for OpenAI batches: validation (OpenAI's line rules, every error
in the batch's ``errors``, the per-model enqueued-token quota) and finalisation (``batch_expired`` /
``batch_cancelled`` lines for requests that never ran, and the output and error Files).

Called by ``worker`` for jobs whose doc has an ``openai`` section; everything else (leases, the
cursor and byte offsets, the engines) is the worker's own, shared with Fireworks jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from batchops.local import jobs, openai_batches, openai_files, outputs
from batchops.local.backend import Backend
from batchops.local.jobs import JobKey
from batchops.local.openai_rows import scan, unfinished_lines
from batchops.local.timeutil import now, rfc3339
from batchops.wire import ERRORS_FILE, JOB_STATE_FAILED, JOB_STATE_PENDING, RESULTS_FILE
from batchops.wire_openai import ERR_TOKEN_LIMIT, batch_error


def validate(
    backend: Backend, owner: str, row: Any, files: list[tuple[str, Path]], counters: tuple[str, ...]
) -> bool:
    """validating -> in_progress, or failed with the input's errors or over the token quota."""
    doc = orjson.loads(row["doc"])
    result = scan(files, doc["openai"]["endpoint"])
    key = JobKey(row["account"], row["id"])
    if result.errors:
        return _fail(backend, owner, key, result.all_errors())
    doc["model"] = result.model
    progress = {
        "percent": 0,
        "totalInputRequests": result.total,
        **dict.fromkeys(counters, 0),
        "enqueuedTokens": result.tokens,
    }
    # One transaction: two servers validating batches of one model cannot both fit under the quota.
    with backend.db.transaction():
        refusal = _over_quota(backend, row["id"], result.model or "", result.tokens)
        if refusal is not None:
            return _fail(backend, owner, key, [refusal])
        return jobs.commit(
            backend,
            key,
            owner,
            state=JOB_STATE_PENDING,
            doc=orjson.dumps(doc),
            progress=progress,
            lifecycle={"validatedTime": rfc3339(now())},
        )


def _over_quota(backend: Backend, batch_id: str, model: str, wanted: int) -> dict[str, Any] | None:
    limit = backend.config.openai_enqueued_token_limit
    if limit is None:
        return None
    states = openai_batches.IN_FLIGHT
    marks = ",".join("?" * len(states))
    found = backend.db.one(
        "SELECT COALESCE(SUM(json_extract(progress, '$.enqueuedTokens')), 0) FROM jobs "  # noqa: S608
        f"WHERE account = ? AND state IN ({marks}) AND json_extract(doc, '$.model') = ? "
        "AND id != ?",
        (openai_files.OPENAI_ACCOUNT, *states, model, batch_id),
    )
    used = int(found[0]) if found else 0
    if used + wanted <= limit:
        return None
    message = (
        f"Enqueued token limit reached for {model} in organization org-local. "
        f"Limit: {limit:,} enqueued tokens. Please try again once some in_progress batches have "
        "been completed."
    )
    return batch_error(ERR_TOKEN_LIMIT, message)


def _fail(backend: Backend, owner: str, key: JobKey, errors: list[dict[str, Any]]) -> bool:
    status = {"code": "INVALID_ARGUMENT", "message": errors[0]["message"], "errors": errors}
    lifecycle = {"validatedTime": None, "runStartTime": None, "endTime": rfc3339(now())}
    return jobs.commit(
        backend, key, owner, state=JOB_STATE_FAILED, status=status, lifecycle=lifecycle
    )


def finish(backend: Backend, row: Any, files: list[tuple[str, Path]], code: str | None) -> None:
    """After ``outputs.finalise``: a line per request that never ran (``code`` batch_expired or
    batch_cancelled; none before validation passed), then the batch's output and error Files.
    Repeatable: finalise truncated the error file back to its committed offset first."""
    _, err_path = outputs.paths(backend, row)
    if code is not None and row["progress"]:
        with err_path.open("ab") as err:
            for line in unfinished_lines(row["id"], files, row["cursor"], code):
                err.write(line)
    dataset_id = outputs.output_id(row)
    openai_files.add_output(backend, row["id"], "output", dataset_id, RESULTS_FILE)
    openai_files.add_output(backend, row["id"], "error", dataset_id, ERRORS_FILE)
