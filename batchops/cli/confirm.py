"""Confirmation before an `apply`, `delete` or `cancel` that removes, stops or replaces jobs.

On a terminal (stdin and stdout both TTYs) the user is asked and only ``yes`` goes on. Without one
(CI), deletions need ``--auto-approve`` / ``-y`` (or, for apply, a saved plan that shows them),
while creates and replacements proceed as before. ``batchops.cli.apply`` runs ``ApplyGate.check``
on each pass's plan before anything is executed; ``delete`` and ``cancel`` call ``confirm``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from batchops.errors import BatchopsError
from batchops.plan import Action, Kind, Plan

DELETES = frozenset({Kind.PRUNE_JOB, Kind.PRUNE_DATASET})  # a prune of a running job stops it
ASK = DELETES | {Kind.REPLACE_JOB}
QUESTION = "Do you want to perform these actions? Only 'yes' will be accepted: "


class NotConfirmedError(BatchopsError):
    """The user said no, or there was nobody to ask and deleting needs consent."""


def on_terminal() -> bool:
    """Someone can answer: both stdin and stdout are terminals."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def ask_terminal(question: str, *, stream_out: bool = True) -> str:
    """Ask on the terminal (stdout, or stderr when stdout carries JSON); EOF answers ''."""
    out = sys.stdout if stream_out else sys.stderr
    out.write(question)
    out.flush()
    return sys.stdin.readline()


def confirm(
    what: str, *, auto_approve: bool, how: str, ask: Callable[[str], str] | None = None
) -> None:
    """Go on, or raise NotConfirmedError. ``what`` names the change; ``how`` says what to pass
    to proceed without a terminal."""
    if auto_approve:
        return
    if not on_terminal():
        raise NotConfirmedError(f"refusing to {what} without confirmation (no terminal): {how}")
    answer = (ask or ask_terminal)(QUESTION)
    if answer.strip() != "yes":
        raise NotConfirmedError(f"cancelled: did not {what}")


def _key(action: Action) -> tuple[str, str]:
    return action.kind.value, action.resource.remote_id


@dataclass
class ApplyGate:
    """The consent an `apply` run has: risky actions already approved are not asked again."""

    auto_approve: bool
    saved_plan: bool  # `apply PLANFILE`: the saved plan showed its deletions
    show: Callable[[Plan], None]  # prints the plan when the pass's printer did not
    ask: Callable[[str], str] = ask_terminal
    approved: set[tuple[str, str]] = field(default_factory=set)
    passes: int = 0

    def check(self, plan: Plan) -> None:
        self.passes += 1
        risky = [a for a in plan.actions if a.kind in ASK and _key(a) not in self.approved]
        if not risky or self.auto_approve:
            return
        if self.saved_plan and self.passes == 1:  # the saved plan, reviewed when it was made
            self.approved.update(_key(a) for a in risky)
            return
        if on_terminal():
            self.show(plan)
            confirm(_describe(risky), auto_approve=False, how="", ask=self.ask)
        elif any(a.kind in DELETES for a in risky):
            n = sum(a.kind in DELETES for a in risky)
            raise NotConfirmedError(
                f"refusing to delete {n} resource{'' if n == 1 else 's'} without confirmation "
                "(no terminal): pass --auto-approve (-y), or save the plan with "
                "`batchops plan --prune --out plan.json`, review it, and run "
                "`batchops apply plan.json`"
            )
        self.approved.update(_key(a) for a in risky)


def _describe(risky: list[Action]) -> str:
    deletes = sum(a.kind in DELETES for a in risky)
    replaces = len(risky) - deletes
    parts = [f"delete {deletes} resource{'' if deletes == 1 else 's'}"] if deletes else []
    parts += [f"replace {replaces} job{'' if replaces == 1 else 's'}"] if replaces else []
    return " and ".join(parts)
