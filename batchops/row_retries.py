"""Each declared job's failed rows, read from its merged errors file and classified (issue 14).

``batchops.reconcile`` calls ``failed_rows`` once per pass, before planning, for the jobs whose
results are on disk and verified: rows that failed for a passing reason (``plan.rowerrors``) are
written to ``.batchops/derived/<sha256>.jsonl`` (the rows as they are in the declared dataset), so
that the planner can send them again in a follow-up job (``spec.rowRetries``); rows that failed
for good are reported with their reasons and never sent again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson

from batchops.config import ensure_state_dir
from batchops.datasets import iter_custom_ids
from batchops.layout import errors_path
from batchops.manifest.desired import Desired, JobDecl
from batchops.plan.rowerrors import FailureSummary, RowFailure, classify, summarize
from batchops.plan.rows import DerivedInput, FailedRows
from batchops.private import private_dir
from batchops.results import LocalResult
from batchops.reuse_rows import DERIVED_DIR, derived_digest, derived_lines, write_derived


def failed_rows(
    desired: Desired, local: Mapping[str, LocalResult], *, root: Path
) -> dict[str, FailedRows]:
    """The classified failed rows of each declared job whose verified results hold some."""
    found = {}
    for decl in desired.jobs:
        result = local.get(decl.name)
        record = result.record if result is not None and result.verified else None
        if record is None or record.counts.failed == 0:
            continue
        found[decl.name] = _classified(decl, desired, record.last_job_id, root)
    return found


def _classified(decl: JobDecl, desired: Desired, job: str, root: Path) -> FailedRows:
    transient: list[str] = []
    permanent: list[tuple[str, str]] = []
    errors = list(_errors(errors_path(decl.output_path)))
    for cid, error in errors:
        if classify(error) is RowFailure.TRANSIENT:
            transient.append(cid)
        else:
            permanent.append((cid, error or ""))
    ds = desired.dataset(decl.input_dataset) if decl.input_dataset else None
    retry = None
    if transient and ds is not None and decl.row_retries > 0:
        retry = _retry_input(ds.name, ds.files, frozenset(transient), root)
    return FailedRows(job, tuple(transient), tuple(permanent), retry, summarize(errors))


def failure_summary(path: Path) -> FailureSummary | None:
    """The failed rows of an errors file by class and reason (None: none failed), for
    ``batchops results``, which reads local files only."""
    summary = summarize(_errors(path))
    return summary if summary.failed else None


def any_transient(path: Path) -> bool:
    """Whether an errors file holds a row that failed for a passing reason."""
    return any(classify(error) is RowFailure.TRANSIENT for _, error in _errors(path))


def _errors(path: Path) -> Iterator[tuple[str, str | None]]:
    if not path.is_file():
        return
    with path.open("rb") as handle:
        for raw in handle:
            try:
                row = orjson.loads(raw) if raw.strip() else None
            except orjson.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("custom_id"), str):
                yield row["custom_id"], _error_text(row.get("error_code"), row.get("error"))


def _error_text(code: object, message: object) -> str | None:
    """``"<code>: <message>"``, what ``classify`` reads, from the results schema's fields (or
    an error object ``{code, message}``, as responseFormat failures are written)."""
    if isinstance(message, Mapping):
        code, message = message.get("code"), message.get("message")
    text = message if isinstance(message, str) else None
    if isinstance(code, str | int) and str(code) and not (text or "").startswith(f"{code}:"):
        return f"{code}: {text or ''}"
    return text


def _retry_input(
    dataset: str, files: tuple[Path, ...], wanted: frozenset[str], root: Path
) -> DerivedInput:
    positions = frozenset(
        pos for pos, cid in enumerate(iter_custom_ids(list(files))) if cid in wanted
    )
    sha, rows, size = derived_digest(files, positions)
    folder = private_dir(ensure_state_dir(root) / DERIVED_DIR, root=root)
    path = folder / f"{sha}.jsonl"
    if not path.is_file() or path.stat().st_size != size:
        write_derived(path, derived_lines(files, positions))
    return DerivedInput(dataset=dataset, path=path, sha256=sha, rows=rows, size=size)
