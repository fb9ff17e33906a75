"""Plans as text, JSON (a versioned schema, see docs/reconciler.md) and Markdown. Pure.

``batchops.cli.plan`` and ``batchops.cli.apply`` print these; the JSON form is also what
``plan --out`` saves (with the paths and options added by the CLI) and ``apply PLANFILE`` reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from batchops.plan import Action, Kind, Plan
from batchops.plan.model import StageInfo
from batchops.render.cost import cost_json, cost_markdown, cost_text_lines
from batchops.render.units import human_size
from batchops.textsafe import inert, md_code, md_text

FORMAT_VERSION = 1
SYMBOLS = {
    Kind.CREATE_DATASET: "+",
    Kind.CREATE_JOB: "+",
    Kind.RETRY_JOB: "+",
    Kind.REPLACE_JOB: "~",
    Kind.RESUME_JOB: "↻",
    Kind.DOWNLOAD: "↓",
    Kind.WAIT: "…",
    Kind.WAITS: "…",
    Kind.FAILED: "✗",
    Kind.EXPIRED: "✗",
    Kind.CONFLICT: "✗",
    Kind.PRUNE_JOB: "-",
    Kind.PRUNE_DATASET: "-",
    Kind.MOVED: "→",
    Kind.CANCEL_DUPLICATE: "⊘",
}
_VERBS = (
    (Kind.CREATE_DATASET, "dataset{s} to create"),
    (Kind.CREATE_JOB, "job{s} to create"),
    (Kind.REPLACE_JOB, "job{s} to replace"),
    (Kind.RETRY_JOB, "job{s} to retry"),
    (Kind.RESUME_JOB, "job{s} to resume"),
    (Kind.CANCEL_DUPLICATE, "duplicate{s} to cancel"),
    (Kind.PRUNE_JOB, "job{s} to prune"),
    (Kind.PRUNE_DATASET, "dataset{s} to prune"),
    (Kind.DOWNLOAD, "result{s} to download"),
)
_STATUS = (
    (Kind.WAIT, "in progress"),
    (Kind.WAITS, "waiting on upstream"),
    (Kind.FAILED, "failed"),
    (Kind.EXPIRED, "expired"),
    (Kind.CONFLICT, "in conflict"),
    (Kind.MOVED, "renamed"),
)


def _plural(count: int, text: str) -> str:
    return f"{count} {text.format(s='' if count == 1 else 's')}"


def summary_line(plan: Plan) -> str:
    tables = sum(a.download is not None and a.download.table_only for a in plan.actions)
    counts = {k: plan.count(k) - (tables if k is Kind.DOWNLOAD else 0) for k, _ in _VERBS}
    changes = [_plural(counts[k], t) for k, t in _VERBS if counts[k]]
    changes += [_plural(tables, "table{s} to write again")] if tables else []
    status = [f"{plan.count(k)} {t}" for k, t in _STATUS if plan.count(k)]
    head = f"Plan: {', '.join(changes)}." if changes else "No changes."
    return f"{head} {'; '.join(status).capitalize()}." if status else head


def note_lines(plan: Plan) -> list[str]:
    """What the plan leaves alone, in one line each: owned jobs no manifest declares (with how to
    prune them) and declared jobs outside the selection."""
    lines = []
    both = plan.orphan_jobs and plan.superseded_jobs
    if plan.superseded_jobs:
        n = plan.superseded_jobs
        them = "" if both else f"; `batchops apply --prune` deletes {'it' if n == 1 else 'them'}"
        lines.append(
            f"{_plural(n, 'owned job{s}')} {'is' if n == 1 else 'are'} superseded "
            f"(an older spec of a declared job, replaced by it){them}."
        )
    if plan.orphan_jobs:
        n = plan.orphan_jobs
        them = "it" if n == 1 else "them"
        if both:  # whatever the two counts: "both" read as two jobs when there were five
            them += f" and the superseded {'one' if plan.superseded_jobs == 1 else 'ones'}"
        lines.append(
            f"{_plural(n, 'owned job{s}')} {'is' if n == 1 else 'are'} declared by no "
            f"manifest; `batchops apply --prune` deletes {them}."
        )
    if plan.outside_jobs or plan.outside_datasets:
        parts = [_plural(plan.outside_jobs, "job{s}")] if plan.outside_jobs else []
        parts += [_plural(plan.outside_datasets, "dataset{s}")] if plan.outside_datasets else []
        lines.append(f"{' and '.join(parts)} outside the selection not shown.")
    return lines


def _detail_text(action: Action) -> str:
    d = action.details
    bits = []
    if "rows" in d:
        bits.append(f"{d['rows']} rows, {human_size(int(d.get('size', 0)))}")
    if action.kind is Kind.WAIT and "percent" in d:
        bits.append(f"{d['percent']}%, {d.get('succeeded', 0)}/{d.get('total', 0)} rows")
    if action.kind is Kind.WAIT:
        bits.append(inert(str(d.get("state", "")).removeprefix("JOB_STATE_").lower()))
    if action.kind is Kind.DOWNLOAD:
        bits.append(f"-> {inert(d.get('path', ''))}")
    if action.after:
        bits.append(f"after {inert(action.after)} is READY")
    return f" ({'; '.join(bits)})" if bits else ""


def action_line(action: Action) -> str:
    r = action.resource
    rid = f" [{inert(r.remote_id)}]" if r.remote_id else ""  # a waiting stage has no ID yet
    return (
        f"  {SYMBOLS[action.kind]} {r.kind} {inert(r.name)}{rid}: "
        f"{inert(action.reason)}{_detail_text(action)}"
    )


def plan_text(plan: Plan, *, backend: str | None = None, remote: str = "the backend") -> str:
    """The backend talked to, one line per action; remote and local groups apart (``remote``
    names the backend's kind in the remote group's heading); the summary line last."""
    lines: list[str] = [f"Backend: {backend}"] if backend else []
    for group, title in (("remote", f"Remote ({remote}):"), ("local", "Local files:")):
        members = [a for a in plan.actions if a.group == group]
        if members:
            lines += [title, *(action_line(a) for a in members)]
    lines += stage_lines(plan)
    lines += cost_text_lines(plan.cost)
    lines += note_lines(plan)
    lines.append(summary_line(plan))
    return "\n".join(lines)


def stage_lines(plan: Plan) -> list[str]:
    """``Stages:`` then one line per declared job of a pipeline, upstream first."""
    return stages_text(plan.stages)


def stages_text(stages: Sequence[StageInfo]) -> list[str]:
    if not stages:
        return []
    lines = ["Stages:"]
    for s in stages:
        jobs = f" ({len(s.jobs)} jobs)" if len(s.jobs) > 1 or s.jobs != (s.name,) else ""
        waits = f", waits on {', '.join(map(inert, s.waits_on))}" if s.waits_on else ""
        lines.append(f"  {s.stage}. {inert(s.name)}{jobs}: {s.state}{waits}")
    return lines


def stages_json(plan: Plan) -> list[dict[str, Any]]:
    return stages_data(plan.stages)


def stages_data(stages: Sequence[StageInfo]) -> list[dict[str, Any]]:
    return [
        {
            "stage": s.stage,
            "name": s.name,
            "jobs": list(s.jobs),
            "waitsOn": list(s.waits_on),
            "state": s.state,
        }
        for s in stages
    ]


def action_json(action: Action) -> dict[str, Any]:
    r = action.resource
    return {
        "kind": action.kind.value,
        "group": action.group,
        "change": action.is_change,
        "resource": {"kind": r.kind, "name": r.name, "remoteId": r.remote_id},
        "reason": action.reason,
        "details": dict(action.details),
        "after": action.after,
    }


def plan_json(plan: Plan, *, backend: dict[str, str] | None = None) -> dict[str, Any]:
    """The documented, versioned JSON form (formatVersion 1); ``backend`` names what was asked."""
    o = plan.options
    return {
        "formatVersion": FORMAT_VERSION,
        "project": plan.project,
        **({"backend": dict(backend)} if backend else {}),
        "fingerprint": plan.fingerprint,
        "options": {
            "prune": o.prune,
            "allowEmpty": o.allow_empty,
            "retryFailed": o.retry_failed,
            "download": o.download,
            "canaryOnly": o.canary_only,
            "pruneScope": None if o.prune_scope is None else sorted(o.prune_scope),
        },
        "actions": [action_json(a) for a in plan.actions],
        "stages": stages_json(plan),
        "cost": cost_json(plan.cost),
        "summary": {
            "text": summary_line(plan),
            "remoteChanges": len(plan.remote_changes),
            "localChanges": len(plan.local_changes),
            "counts": {k.value: plan.count(k) for k in Kind if plan.count(k)},
            "orphanJobs": plan.orphan_jobs,
            "supersededJobs": plan.superseded_jobs,
            "outsideSelection": {"jobs": plan.outside_jobs, "datasets": plan.outside_datasets},
        },
    }


def plan_markdown(plan: Plan, *, title: str = "batchops plan", backend: str | None = None) -> str:
    """For $GITHUB_STEP_SUMMARY: a heading, the backend, a table of actions, the summary line."""
    lines = [f"### {title} ({md_text(plan.project)})", ""]
    if backend:
        # Our own words and the user's URL, not server text: kept as written, on one line.
        lines += [f"Backend: {' '.join(backend.split())}", ""]
    if plan.actions:
        lines += ["| | Group | Resource | ID | Reason |", "|---|---|---|---|---|"]
        lines += [_md_row(a) for a in plan.actions]
        lines.append("")
    lines += [f"{md_text(line)}  " for line in stage_lines(plan)]
    lines += cost_markdown(plan.cost)
    lines += [f"{md_text(line)}  " for line in note_lines(plan)]
    lines.append(f"**{summary_line(plan)}**")
    return "\n".join(lines) + "\n"


def _md_row(a: Action) -> str:
    r = a.resource
    # _detail_text is inert already; md_text only adds the Markdown escapes to it.
    reason = md_text(inert(a.reason) + _detail_text(a))
    resource = f"{r.kind} {md_code(r.name)}"
    return f"| {SYMBOLS[a.kind]} | {a.group} | {resource} | {md_code(r.remote_id)} | {reason} |"


def errors_markdown(errors: Iterable[str]) -> str:
    items = [f"- {md_text(e)}" for e in errors]
    return ("#### Errors\n\n" + "\n".join(items) + "\n") if items else ""
