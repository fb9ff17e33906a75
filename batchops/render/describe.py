"""One job's history as text and JSON (formatVersion 1). Pure; ``batchops.cli.describe`` prints.

The API keeps no log of state changes, so the history is the lineage itself: each attempt,
continuation and job of an older spec with when it was created, its state and when that was last
updated, its server message and row counts, oldest first.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from batchops.history import JobHistory, Step
from batchops.money import money_text
from batchops.plan.rowerrors import FailureSummary
from batchops.render.status import summary_lines
from batchops.textsafe import inert

FORMAT_VERSION = 1


def _short(state: str) -> str:
    return inert(state.removeprefix("JOB_STATE_").lower())


def _step_lines(step: Step) -> list[str]:
    spec = "" if step.kind == "canary" else ", current spec" if step.current else ", older spec"
    expires = f"; expires {inert(step.expires)}" if step.expires else ""
    lines = [
        f"  {inert(step.job_id)}  ({step.kind}{spec})",
        f"    created {inert(step.created or '?')}; {_short(step.state)} as of "
        f"{inert(step.updated or '?')}{expires}",
        f"    rows: {step.succeeded} succeeded, {step.failed} failed of {step.total}; "
        f"tokens {step.tokens_in} in, {step.tokens_out} out",
    ]
    if step.message:
        lines.append(f"    server: {inert(step.message)}")
    if step.output_dataset:
        lines.append(f"    output dataset: {inert(step.output_dataset)}")
    return lines


def describe_text(h: JobHistory, failures: FailureSummary | None = None) -> str:
    """``failures``: the failed rows of the results on disk, by class (transient ones are sent
    again, permanent ones never)."""
    lines = [f"Job {h.name}"]
    lines.append(f"  declared in {h.declared}" if h.declared else "  declared by no manifest")
    if h.stage:
        lines.append(f"  {inert(h.stage)}")
    if h.results_path:
        source = f", from {h.results_from}" if h.results_from else ""
        lines.append(f"  results: {h.results_path} ({h.results_state}{source})")
        if h.results_state != "missing":
            lines.append(f"  spent: {money_text(h.spent)} (from the usage in the results)")
    if failures is not None and failures.failed:
        lines += [f"  {line}" for line in summary_lines("failed rows", failures)]
    total = len(h.steps)
    lines.append(f"History ({total} job{'' if total == 1 else 's'} on the account, oldest first):")
    for step in h.steps:
        lines += _step_lines(step)
    if not h.steps:
        lines.append("  (none: not submitted yet, or deleted)")
    return "\n".join(lines)


def describe_json(h: JobHistory, failures: FailureSummary | None = None) -> dict[str, Any]:
    return {
        "formatVersion": FORMAT_VERSION,
        "name": h.name,
        "declared": h.declared,
        "currentJobId": h.current_base,
        "results": {"path": h.results_path, "state": h.results_state, "from": h.results_from},
        "spent": h.spent,
        "stage": h.stage,
        "failedRows": failures.to_json() if failures is not None else None,
        "history": [_camel(asdict(s)) for s in h.steps],
    }


def _camel(d: dict[str, Any]) -> dict[str, Any]:
    def camel(key: str) -> str:
        head, *rest = key.split("_")
        return head + "".join(p.title() for p in rest)

    return {camel(k): v for k, v in d.items()}
