"""The canaries' outcome and a few of their answers, as Markdown for the GitHub step summary.

Pure; ``batchops.cli.apply`` appends it to the step summary. It reads ``Plan.canaries`` (one per
job declaring ``spec.canary``, see ``batchops.plan.canary``). Answers are server text: made
inert and cut short.
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
