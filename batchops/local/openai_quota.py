"""The enqueued-token quota of OpenAI batches (``openai_enqueued_token_limit``), per model.

A batch enqueues the input tokens of its requests from its create until it ends (any terminal
state releases them). A create that would push its model's enqueued tokens past the limit makes a
batch that is ``failed`` at once with ``token_limit_exceeded`` in its ``errors``, as OpenAI fails
such a batch (asynchronously there; here the create's answer already says so). Used by
``openai_batches.create``.
"""

from __future__ import annotations

from typing import Any

from batchops.local import jobs, openai_files
from batchops.local.backend import Backend
from batchops.local.openai_rows import scan
from batchops.providers.fireworks.wire import (
    JOB_STATE_PENDING,
    JOB_STATE_RUNNING,
    JOB_STATE_VALIDATING,
    JOB_STATE_WRITING_RESULTS,
)
from batchops.wire_openai import ERR_TOKEN_LIMIT, batch_error

ENQUEUED = (
    JOB_STATE_VALIDATING,
    JOB_STATE_PENDING,
    JOB_STATE_RUNNING,
    JOB_STATE_WRITING_RESULTS,
    jobs.JOB_STATE_CANCELLING,
)


def measure(backend: Backend, upload: Any, endpoint: str) -> tuple[str, int]:
    """(model, input tokens) of an uploaded batch file, counted once and kept with the file."""
    if upload["tokens"] is not None:
        return upload["model"] or "", int(upload["tokens"])
    path = openai_files.path_of(backend, upload)
    result = scan([(upload["filename"], path)], endpoint)
    model = result.model or ""
    backend.db.run(
        "UPDATE openai_files SET model = ?, tokens = ? WHERE id = ?",
        (model, result.tokens, upload["id"]),
    )
    return model, result.tokens


def refusal(backend: Backend, model: str, wanted: int) -> dict[str, Any] | None:
    """The batch error when ``wanted`` more tokens of ``model`` would exceed the limit; run it in
    the create's transaction, so that two creates cannot both fit under the last of the quota."""
    limit = backend.config.openai_enqueued_token_limit
    if limit is None:
        return None
    marks = ",".join("?" * len(ENQUEUED))
    found = backend.db.one(
        "SELECT COALESCE(SUM(json_extract(progress, '$.enqueuedTokens')), 0) FROM jobs "  # noqa: S608
        f"WHERE account = ? AND state IN ({marks}) AND json_extract(doc, '$.model') = ?",
        (openai_files.OPENAI_ACCOUNT, *ENQUEUED, model),
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
