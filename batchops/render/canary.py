"""The canaries' outcome and a few of their answers, as Markdown for the GitHub step summary,
and as a line each for the terminal.

Pure; ``batchops.cli.apply`` appends it to the step summary and prints the lines. It reads
``Plan.canaries`` (one per job declaring ``spec.canary``, see ``batchops.plan.canary``).
Answers are server text: made inert and cut short.
"""

from __future__ import annotations

from batchops.plan import Plan
from batchops.plan.model import CanaryOutcome
from batchops.textsafe import inert, md_code, md_text

ANSWER_CHARS = 200
_SAID = {
    "absent": "submitted now; the full job waits",
    "running": "in progress; the full job waits",
    "failed": "failed; the full job is not sent",
    "passed": "passed; the full job runs after it",
}


def canary_lines(plan: Plan, *, canary_only: bool = False) -> list[str]:
    """The terminal's line per canary, after ``apply --canary-only`` (where each stands and
    what comes next) and for any canary that failed (why the full job was not sent):
    ``canary of reviews: passed (0 of 50 rows failed); ...``."""
    lines = []
    for canary in plan.canaries:
        if not canary_only and canary.state != "failed":
            continue
        state, _, then = _SAID[canary.state].partition("; ")
        if canary.state == "passed":
            then = "`batchops apply` without --canary-only sends the full job"
        counted = (
            f"{canary.failed_rows:,} of {canary.rows:,} rows failed"
            if canary.state in _ENDED
            else f"{canary.rows:,} rows"
        )
        lines.append(f"canary of {inert(canary.job)}: {state} ({counted}); {then}")
    return lines


_ENDED = ("failed", "passed")


def canary_markdown(plan: Plan) -> str:
    lines = [line for canary in plan.canaries for line in _lines(canary)]
    return ("#### Canaries\n\n" + "\n".join(lines) + "\n") if lines else ""


def _lines(canary: CanaryOutcome) -> list[str]:
    failed = f", {canary.failed_rows:,} failed rows" if canary.state in ("failed", "passed") else ""
    head = f"- {md_code(canary.job)}: canary of {canary.rows:,} rows {_SAID[canary.state]}{failed}"
    answers = [
        f"  - {md_code(cid)}: {md_text(inert(_short(text)))}" for cid, text in canary.answers[:3]
    ]
    return [head, *answers]


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ANSWER_CHARS else text[: ANSWER_CHARS - 1] + "…"
