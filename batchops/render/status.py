"""Status of declared jobs as rows, plain text, JSON and a rich table. Pure.

Progress and row counts are over the lineage (the latest attempt and all its continuations), so a
resumed job reads as one job: rows out of the first job's total, never a continuation's share.

``batchops.cli.status`` builds the rows from ``reconcile.Context.views()`` and prints one of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text

from batchops.money import Price, money_text, spent
from batchops.plan import JobView
from batchops.plan.canary import CanaryState
from batchops.plan.rowerrors import FailureSummary
from batchops.providers import JobState, RemoteJob, Tokens
from batchops.textsafe import inert

FORMAT_VERSION = 1


@dataclass(frozen=True)
class StatusRow:
    name: str
    remote_id: str
    state: str
    percent: int
    succeeded: int
    failed: int
    tokens_in: int
    tokens_out: int
    results_path: str
    results: str  # "verified" | "stale" | "missing"
    total: int = 0  # input rows of the lineage
    lineage: int = 0  # jobs in the lineage: 1, plus one per continuation
    spent: float | None = None  # what the results on disk cost (their usage x the price)
    matrix: str | None = None  # the declared name of the matrix (or chain) it belongs to
    waits_on: tuple[str, ...] = ()  # a pipeline stage waiting on these (declared names)
    failures: FailureSummary | None = None  # the merged results' failed rows, by class


def _results_state(view: JobView) -> str:
    if view.result is None or view.result.record is None:
        return "missing"
    return "verified" if view.results_current else "stale"


def _spent(view: JobView, price: Price | None) -> float | None:
    record = view.result.record if view.result is not None else None
    return spent(record.spent_usage if record is not None else None, price)


@dataclass(frozen=True)
class _Rows:
    """Row counts over a lineage: the latest attempt with every continuation of it."""

    total: int
    succeeded: int
    failed: int
    percent: int


def _lineage_rows(view: JobView) -> _Rows:
    """A continuation runs only the rows its lineage has not answered yet, so the lineage's total
    is its first job's; rows succeeded add up over the links; the rows failed are the latest
    link's (earlier failures are run again by the continuation); progress is rows answered
    before the latest link plus rows the latest link processed, over the total."""
    latest = view.latest
    if latest is None:
        return _Rows(0, 0, 0, 0)
    chain = [j.rows for parts, j in view.family if parts.attempt == latest[0].attempt]
    first, last = chain[0], chain[-1]
    before = sum(p.succeeded for p in chain[:-1] if p)
    succeeded = before + (last.succeeded if last else 0)
    total = first.total if first else 0
    processed = before + (last.processed if last else 0)
    percent = min(100, processed * 100 // total) if total else 0
    if latest[1].state is JobState.FINISHED:
        percent = 100
    return _Rows(total, succeeded, last.failed if last else 0, percent)


def _canary_rows(job: RemoteJob, failed: int) -> _Rows:
    """A canary's rows; ``failed`` counts the answers that break responseFormat too."""
    rows = job.rows
    if rows is None:
        return _Rows(0, 0, 0, 0)
    percent = 100 if job.state is JobState.FINISHED else rows.processed * 100 // max(rows.total, 1)
    failed = max(failed, rows.failed)
    return _Rows(rows.total, rows.succeeded - (failed - rows.failed), failed, min(100, percent))


def status_row(
    view: JobView,
    price: Price | None = None,
    failures: FailureSummary | None = None,
    waits_on: tuple[str, ...] = (),
    canary: CanaryState | None = None,
) -> StatusRow:
    """``price``: of the job's declared model, for the spend so far (None: unknown);
    ``failures``: its merged results' failed rows (``reconcile.Context.failed_rows``);
    ``waits_on``: the stages a waiting pipeline stage waits on (``batchops.plan.graph``);
    ``canary``: where its canary stands, shown while no full job exists (``spec.canary``)."""
    latest = view.latest
    rows = _lineage_rows(view)
    state = view.state.removeprefix("JOB_STATE_")
    remote_id = latest[1].remote_id if latest else "" if waits_on else view.base_id
    tokens = [j.tokens for _, j in view.family]
    if latest is None and canary is not None and canary.job is not None:  # only its canary ran
        job = canary.job
        state, remote_id = f"CANARY {canary.state.upper()}", job.remote_id
        rows, tokens = _canary_rows(job, canary.failed), [job.tokens]
    record = view.result.record if view.result is not None else None
    if record is not None and view.results_current:  # the merged results: every row's outcome
        counts = record.counts  # (reused answers, responseFormat failures and retries included)
        total = counts.expected or counts.succeeded + counts.failed
        rows = _Rows(total, counts.succeeded, counts.failed, 100)
        if record.spend is not None:  # the tokens SPENT prices: its own runs' answers in them
            tokens = [Tokens(record.spend.prompt_tokens, record.spend.completion_tokens)]
        if latest is None:
            state, remote_id = "REUSED", ""  # every row answered earlier: no job of its own
    return StatusRow(
        name=view.decl.name,
        remote_id=remote_id,
        state="WAITING" if waits_on and latest is None else state,
        percent=rows.percent,
        succeeded=rows.succeeded,
        failed=rows.failed,
        tokens_in=sum(t.input for t in tokens),
        tokens_out=sum(t.output for t in tokens),
        results_path=view.decl.output_display,
        results=_results_state(view),
        total=rows.total,
        lineage=sum(parts.attempt == latest[0].attempt for parts, _ in view.family)
        if latest
        else 0,
        spent=_spent(view, price),
        matrix=view.decl.group,
        waits_on=waits_on,
        failures=failures,
    )


COLUMNS = (
    "NAME",
    "REMOTE ID",
    "STATE",
    "PROGRESS",
    "OK/FAILED",
    "TOKENS IN/OUT",
    "SPENT",
    "RESULTS",
)


def _cells(row: StatusRow) -> tuple[str, ...]:
    """Server-supplied values (IDs, states) and names made inert: one printable line each."""
    return (
        inert(row.name),
        inert(row.remote_id) or "-",
        inert(row.state),
        f"{row.percent}%",
        f"{row.succeeded}/{row.failed}",
        f"{row.tokens_in}/{row.tokens_out}",
        "-" if row.results == "missing" else money_text(row.spent),
        f"{inert(row.results_path)} ({row.results})",
    )


def status_text(rows: list[StatusRow]) -> str:
    """Plain aligned columns, for pipes and logs, then each job's failed rows by class."""
    if not rows:
        return "No jobs declared."
    table = [COLUMNS, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    return "\n".join(lines + failure_lines(rows))


def failure_lines(rows: list[StatusRow]) -> list[str]:
    """``j: 3 failed rows: 2 transient (429 x2), 1 permanent (INVALID_ARGUMENT x1)``, then a
    few example messages, indented; server and dataset text made inert."""
    lines = []
    for row in rows:
        if row.failures is not None and row.failures.failed:
            lines += summary_lines(inert(row.name), row.failures)
    return lines


def summary_lines(head: str, summary: FailureSummary) -> list[str]:
    """What ``status``, ``describe`` and ``batchops results`` print of one job's failed rows:
    transient ones are sent again (spec.rowRetries), permanent ones never."""
    n = summary.failed
    lines = [f"{head}: {n:,} failed row{'' if n == 1 else 's'}: {inert(summary.text())}"]
    lines += [f"    {kind}: {inert(text)}" for kind, text in summary.examples]
    return lines


def status_table(rows: list[StatusRow]) -> Table:
    table = Table(*COLUMNS, box=None, header_style="bold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in _cells(row)))  # Text: no rich markup in cells
    return table


def status_json(rows: list[StatusRow]) -> dict[str, Any]:
    """camelCase keys, as in the plan JSON; ``results`` is the path, ``resultsState`` its state."""
    return {"formatVersion": FORMAT_VERSION, "jobs": [_row_json(r) for r in rows]}


def _row_json(row: StatusRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "remoteId": row.remote_id,
        "state": row.state,
        "percent": row.percent,
        "succeeded": row.succeeded,
        "failed": row.failed,
        "tokensIn": row.tokens_in,
        "tokensOut": row.tokens_out,
        "results": row.results_path,
        "resultsState": row.results,
        "total": row.total,
        "lineage": row.lineage,
        "spent": row.spent,
        "matrix": row.matrix,
        "waitsOn": list(row.waits_on),
        "failedRows": row.failures.to_json() if row.failures is not None else None,
    }
