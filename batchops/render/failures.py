"""Failures as text lines, GitHub Actions ``::error`` annotations and Markdown. Pure.

``batchops.cli.apply`` and ``batchops.cli.plan`` print these: a declared job that failed or
expired for good (with the server's reason; a conflict is annotated too), and jobs whose results
hold failed rows (with their spec.maxFailedRows, split into transient and permanent with their
reason codes, and the first error messages of each class). Annotations point
at the job's manifest (``file=...,line=...``) so that GitHub shows them on the pull request's
diff.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from batchops.plan import Action, Kind, Plan, RowFailures
from batchops.render.diagnostics import github_annotation
from batchops.textsafe import inert, md_code, md_text

_FAILED = (Kind.FAILED, Kind.EXPIRED)  # conflicts are errors already, printed as such
_ANNOTATED = (*_FAILED, Kind.CONFLICT)


def failed_actions(plan: Plan, kinds: tuple[Kind, ...] = _FAILED) -> list[Action]:
    return [a for a in plan.actions if a.kind in kinds]


def rows_text(rows: RowFailures) -> str:
    """'answers: 2 of 12 rows failed (maxFailedRows allows 0): 1 transient (429 x1), 1
    permanent (INVALID_ARGUMENT x1)'."""
    return (
        f"{inert(rows.job)}: {rows.failed} of {rows.total} rows failed "
        f"(maxFailedRows allows {rows.allowed}){_classes(rows, inert)}"
    )


def _classes(rows: RowFailures, code_text: Callable[[str], str]) -> str:
    """': 2 transient (429 x2), 1 permanent (INVALID_ARGUMENT x1)': the server's codes through
    ``code_text``."""
    return f": {rows.summary.text(code_text)}" if rows.summary and rows.summary.failed else ""


def _examples(rows: RowFailures) -> list[tuple[str, str]]:
    """(class, "custom_id: message") of the first few failed rows of each class; without a
    classification, the errors file's first lines."""
    if rows.summary and rows.summary.failed:
        return [(f"{kind}: ", text) for kind, text in rows.summary.examples]
    return [("", text) for text in rows.first_errors]


def action_text(action: Action) -> str:
    """One printable line: names, IDs and the server's reason made inert."""
    r = action.resource
    return f"{r.kind} {inert(r.name)} [{inert(r.remote_id)}]: {inert(action.reason)}"


def failure_lines(plan: Plan, rows: Sequence[RowFailures]) -> list[str]:
    """One line per failed job (the server's reason), then per job with failed rows, followed by
    its first error messages, indented."""
    lines = [f"failed: {action_text(a)}" for a in failed_actions(plan)]
    for r in rows:
        lines.append(f"{'failed' if r.over_limit else 'warning'}: {rows_text(r)}")
        lines += [f"    {kind}{inert(text)}" for kind, text in _examples(r)]  # dataset text
    return lines


def failure_annotations(plan: Plan, rows: Sequence[RowFailures]) -> str:
    """``::error`` lines at the manifest of each failed job, and of each job over its limit."""
    lines = []
    for action in failed_actions(plan, _ANNOTATED):
        lines.append(
            _annotation(
                plan, action.resource.name, action_text(action), job=action.resource.kind == "job"
            )
        )
    for r in rows:
        if r.over_limit:
            first = f"; first: {r.first_errors[0]}" if r.first_errors else ""
            lines.append(_annotation(plan, r.job, f"job {rows_text(r)}{first}", job=True))
    return "\n".join(lines)


def _annotation(plan: Plan, name: str, message: str, *, job: bool) -> str:
    decl = plan.decl(name) if job else None
    if decl is None:
        return github_annotation(None, message)
    return github_annotation(decl.source, message)


def failures_markdown(plan: Plan, rows: Sequence[RowFailures]) -> str:
    """For $GITHUB_STEP_SUMMARY: each failure with its reason, each job's failed rows. Our own
    words as written; names, IDs, server reasons and error lines through md_code/md_text."""
    items = [f"- ✗ {_action_markdown(a)}" for a in failed_actions(plan)]
    for r in rows:
        mark = "✗" if r.over_limit else "!"
        items.append(
            f"- {mark} {md_text(r.job)}: {r.failed} of {r.total} rows failed "
            f"(maxFailedRows allows {r.allowed}){_classes(r, md_code)}"
        )
        items += [f"  - {kind}{md_code(text)}" for kind, text in _examples(r)]
    return ("#### Failures\n\n" + "\n".join(items) + "\n") if items else ""


def _action_markdown(action: Action) -> str:
    r = action.resource
    return f"{r.kind} {md_code(r.name)} [{md_code(r.remote_id)}]: {md_text(action.reason)}"
