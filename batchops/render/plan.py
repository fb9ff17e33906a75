"""Plans as text, JSON (a versioned schema, see docs/reconciler.md) and Markdown. Pure.

``batchops.cli.plan`` and ``batchops.cli.apply`` print these; the JSON form is also what
``plan --out`` saves (with the paths and options added by the CLI) and ``apply PLANFILE`` reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from batchops.plan import Action, Kind, Plan
from batchops.render.units import human_size

FORMAT_VERSION = 1
SYMBOLS = {
    Kind.CREATE_DATASET: "+", Kind.CREATE_JOB: "+", Kind.RETRY_JOB: "+", Kind.REPLACE_JOB: "~",
    Kind.RESUME_JOB: "↻", Kind.DOWNLOAD: "↓", Kind.WAIT: "…", Kind.FAILED: "✗",
    Kind.EXPIRED: "✗", Kind.CONFLICT: "✗", Kind.PRUNE_JOB: "-", Kind.PRUNE_DATASET: "-",
    Kind.MOVED: "→",
}  # fmt: skip
_VERBS = (
    (Kind.CREATE_DATASET, "dataset{s} to create"), (Kind.CREATE_JOB, "job{s} to create"),
    (Kind.REPLACE_JOB, "job{s} to replace"), (Kind.RETRY_JOB, "job{s} to retry"),
    (Kind.RESUME_JOB, "job{s} to resume"), (Kind.PRUNE_JOB, "job{s} to prune"),
    (Kind.PRUNE_DATASET, "dataset{s} to prune"), (Kind.DOWNLOAD, "result{s} to download"),
)  # fmt: skip
_STATUS = (
    (Kind.WAIT, "in progress"), (Kind.FAILED, "failed"), (Kind.EXPIRED, "expired"),
    (Kind.CONFLICT, "in conflict"), (Kind.MOVED, "renamed"),
)  # fmt: skip


def _plural(count: int, text: str) -> str:
    return f"{count} {text.format(s='' if count == 1 else 's')}"


def summary_line(plan: Plan) -> str:
    changes = [_plural(plan.count(k), t) for k, t in _VERBS if plan.count(k)]
    status = [f"{plan.count(k)} {t}" for k, t in _STATUS if plan.count(k)]
    head = f"Plan: {', '.join(changes)}." if changes else "No changes."
    return f"{head} {'; '.join(status).capitalize()}." if status else head


def _detail_text(action: Action) -> str:
    d = action.details
    bits = []
    if "rows" in d:
        bits.append(f"{d['rows']} rows, {human_size(int(d.get('size', 0)))}")
    if action.kind is Kind.WAIT and "percent" in d:
        bits.append(f"{d['percent']}%, {d.get('succeeded', 0)}/{d.get('total', 0)} rows")
    if action.kind is Kind.WAIT:
        bits.append(str(d.get("state", "")).removeprefix("JOB_STATE_").lower())
    if action.kind is Kind.DOWNLOAD:
        bits.append(f"-> {d.get('path', '')}")
    if action.after:
        bits.append(f"after {action.after} is READY")
    return f" ({'; '.join(bits)})" if bits else ""


def action_line(action: Action) -> str:
    r = action.resource
    return (f"  {SYMBOLS[action.kind]} {r.kind} {r.name} [{r.remote_id}]: {action.reason}"
            f"{_detail_text(action)}")  # fmt: skip


def plan_text(plan: Plan, *, backend: str | None = None) -> str:
    """The backend talked to, one line per action; remote and local groups apart; the summary
    line last."""
    lines: list[str] = [f"Backend: {backend}"] if backend else []
    for group, title in (("remote", "Remote (the Fireworks account):"), ("local", "Local files:")):
        members = [a for a in plan.actions if a.group == group]
        if members:
            lines += [title, *(action_line(a) for a in members)]
    lines.append(summary_line(plan))
    return "\n".join(lines)


def action_json(action: Action) -> dict[str, Any]:
    r = action.resource
    return {
        "kind": action.kind.value, "group": action.group, "change": action.is_change,
        "resource": {"kind": r.kind, "name": r.name, "remoteId": r.remote_id},
        "reason": action.reason, "details": dict(action.details), "after": action.after,
    }  # fmt: skip


def plan_json(plan: Plan, *, backend: dict[str, str] | None = None) -> dict[str, Any]:
    """The documented, versioned JSON form (formatVersion 1); ``backend`` names what was asked."""
    o = plan.options
    return {
        "formatVersion": FORMAT_VERSION, "project": plan.project,
        **({"backend": dict(backend)} if backend else {}),
        "fingerprint": plan.fingerprint,
        "options": {"prune": o.prune, "allowEmpty": o.allow_empty,
                    "retryFailed": o.retry_failed, "download": o.download},
        "actions": [action_json(a) for a in plan.actions],
        "summary": {
            "text": summary_line(plan), "remoteChanges": len(plan.remote_changes),
            "localChanges": len(plan.local_changes),
            "counts": {k.value: plan.count(k) for k in Kind if plan.count(k)},
        },
    }  # fmt: skip


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def plan_markdown(
    plan: Plan, *, title: str = "batchops plan", backend: str | None = None
) -> str:
    """For $GITHUB_STEP_SUMMARY: a heading, the backend, a table of actions, the summary line."""
    lines = [f"### {title} ({plan.project})", ""]
    if backend:
        lines += [f"Backend: {_md_cell(backend)}", ""]
    if plan.actions:
        lines += ["| | Group | Resource | ID | Reason |", "|---|---|---|---|---|"]
        lines += [_md_row(a) for a in plan.actions]
        lines.append("")
    lines.append(f"**{summary_line(plan)}**")
    return "\n".join(lines) + "\n"


def _md_row(a: Action) -> str:
    r = a.resource
    reason = _md_cell(a.reason + _detail_text(a))
    return f"| {SYMBOLS[a.kind]} | {a.group} | {r.kind} `{r.name}` | `{r.remote_id}` | {reason} |"


def errors_markdown(errors: Iterable[str]) -> str:
    items = [f"- {_md_cell(e)}" for e in errors]
    return ("#### Errors\n\n" + "\n".join(items) + "\n") if items else ""
