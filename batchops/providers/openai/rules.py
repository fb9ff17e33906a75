"""OpenAI's rules for batch input, checked at ``validate`` time with file:line.

``check_job`` is this kind's entry in ``batchops.providers.rules.RULES``: ``batchops validate``
and every pass run it (through ``batchops.checks``) for each job on an OpenAI-compatible
provider. Pure: rows in, Diagnostics out.

- ``custom_id``: at most 64 characters of printable ASCII without spaces. OpenAI documents only
  uniqueness (reference §11.8); 64 is Together's documented cap and the strictest known, and
  printable ASCII keeps IDs safe in metadata, file names and logs, so one dataset runs on every
  compatible server.
- A single request line larger than the per-batch byte cap can never be submitted (bigger
  datasets are split into parts, see ``parts``).
- Parameters OpenAI does not accept: ``topK`` and ``precision`` (Fireworks-only), and
  ``stream: true`` in a body (a batch cannot stream).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from batchops.errors import Diagnostic
from batchops.providers.openai.lines import RequestShape, render
from batchops.providers.rules import JobCheck, RowsFn
from batchops.wire_openai import MAX_BATCH_FILE_BYTES

CUSTOM_ID_MAX = 64
_CUSTOM_ID_RE = re.compile(r"[\x21-\x7e]+")
# Manifest fields (camelCase, as written) that no OpenAI-compatible endpoint accepts.
UNSUPPORTED_FIELDS = {
    "inferenceParameters.topK": "OpenAI-compatible batch APIs have no top_k; remove it",
    "precision": "precision is a Fireworks setting; OpenAI-compatible providers choose it",
}


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str


def custom_id_problem(custom_id: Any) -> str | None:
    if not isinstance(custom_id, str) or not custom_id:
        return "custom_id must be a non-empty string"
    if len(custom_id) > CUSTOM_ID_MAX:
        return (
            f"custom_id is {len(custom_id)} characters; OpenAI-compatible providers accept "
            f"at most {CUSTOM_ID_MAX}"
        )
    if not _CUSTOM_ID_RE.fullmatch(custom_id):
        return "custom_id must be printable ASCII without spaces for OpenAI-compatible providers"
    return None


def row_problems(
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    shape: RequestShape,
    *,
    max_bytes: int = MAX_BATCH_FILE_BYTES,
) -> list[RowProblem]:
    """Every problem of every row (line numbers are the dataset file's, 1-based)."""
    problems: list[RowProblem] = []
    for line, row in rows:
        problem = custom_id_problem(row.get("custom_id"))
        if problem:
            problems.append(RowProblem(line, problem))
        body = row.get("body")
        if isinstance(body, Mapping) and body.get("stream"):
            problems.append(RowProblem(line, "body.stream: a batch request cannot stream"))
        size = len(render(row, shape)) if isinstance(body, Mapping) else 0
        if size > max_bytes:
            problems.append(
                RowProblem(
                    line,
                    f"the request line is {size} bytes; the provider's batch cap is "
                    f"{max_bytes} bytes",
                )
            )
    return problems


def spec_problems(spec: Mapping[str, Any], shape: RequestShape) -> list[tuple[str, str]]:
    """(field path, message) for job settings the provider does not accept."""
    found: list[tuple[str, str]] = []
    params = spec.get("inferenceParameters", spec) or {}
    if params.get("topK") is not None:
        found.append(("inferenceParameters.topK", UNSUPPORTED_FIELDS["inferenceParameters.topK"]))
    if spec.get("precision") is not None:
        found.append(("precision", UNSUPPORTED_FIELDS["precision"]))
    if shape.params.get("stream"):
        found.append(("inferenceParameters.extraBody.stream", "a batch request cannot stream"))
    return found


def diagnostics(path: str, problems: Iterable[RowProblem]) -> list[Diagnostic]:
    return [Diagnostic(path, p.line, 1, p.message) for p in problems]


def check_job(job: JobCheck, rows: RowsFn) -> list[Diagnostic]:
    """Every OpenAI rule the job (at its manifest line) and its rows (at theirs) break."""
    params = {k: v for k, v in job.parameters.items() if k != "extraBody"}
    extra = job.parameters.get("extraBody")
    shape = RequestShape.from_inference(
        job.model,
        {_snake(k): v for k, v in params.items()},
        extra if isinstance(extra, Mapping) else None,
    )
    spec: dict[str, Any] = {"inferenceParameters": dict(job.parameters)}
    if job.precision:
        spec["precision"] = job.precision
    found = [
        job.at(f"{field}: {message}", field=field) for field, message in spec_problems(spec, shape)
    ]
    cap = int(job.limits.get("maxBytesPerBatch", MAX_BATCH_FILE_BYTES))
    for path, group in itertools.groupby(rows(), key=lambda r: r.path):  # streamed, file by file
        numbered = ((r.line, r.row) for r in group)
        found += diagnostics(path, row_problems(numbered, shape, max_bytes=cap))
    return found


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
