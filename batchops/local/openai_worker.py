"""The worker's steps that differ for OpenAI batches: validation (OpenAI's line rules, every error
in the batch's ``errors``) and finalisation (``batch_expired`` /
``batch_cancelled`` lines for requests that never ran, and the output and error Files). The
token quota is checked at create, in ``openai_quota``.

Called by ``worker`` for jobs whose doc has an ``openai`` section; everything else (leases, the
cursor and byte offsets, the engines) is the worker's own, shared with Fireworks jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from batchops.local import jobs, openai_files, outputs
from batchops.local.backend import Backend
from batchops.local.jobs import JobKey
from batchops.local.openai_rows import scan, unfinished_lines
from batchops.local.timeutil import now, rfc3339
from batchops.providers.fireworks.wire import (
    ERRORS_FILE,
    JOB_STATE_FAILED,
    JOB_STATE_PENDING,
    RESULTS_FILE,
)


def validate(
    backend: Backend, owner: str, row: Any, files: list[tuple[str, Path]], counters: tuple[str, ...]
) -> bool:
    """validating -> in_progress, or failed with every error of the input file."""
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
    return jobs.commit(
        backend,
        key,
        owner,
        state=JOB_STATE_PENDING,
        doc=orjson.dumps(doc),
        progress=progress,
        lifecycle={"validatedTime": rfc3339(now())},
    )


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
    if code is not None and "totalInputRequests" in orjson.loads(row["progress"] or b"{}"):
        with err_path.open("ab") as err:
            for line in unfinished_lines(row["id"], files, row["cursor"], code):
                err.write(line)
    dataset_id = outputs.output_id(row)
    openai_files.add_output(backend, row["id"], "output", dataset_id, RESULTS_FILE)
    openai_files.add_output(backend, row["id"], "error", dataset_id, ERRORS_FILE)
