"""A ``Reporter`` (see ``batchops.apply``) that logs one line per finished action, and the cost
of a pass that sends rows before anything of it is sent (``log_cost``).

``batchops.watch.service`` hands both to ``reconcile.run_pass``; the daemon has no terminal, so
there are no progress bars, and transfers are logged at debug level only.
"""

from __future__ import annotations

import logging

from batchops.errors import BatchopsError
from batchops.plan import Action, Plan
from batchops.render.cost import cost_text_lines

log = logging.getLogger("batchops.watch.actions")


def log_cost(plan: Plan) -> None:
    """What a pass about to send rows will cost (a pipeline's next stage, a changed job), one
    line each, before anything is sent: nothing the daemon pays for starts unlogged. A plan
    over a budget is then refused (``batchops.watch.loop``), its marks in these lines."""
    if plan.cost is None or not plan.cost.actions:
        return
    for line in cost_text_lines(plan.cost):
        log.info("%s", line.strip(), extra={"event": "cost"})


class LogReporter:
    def action_started(self, action: Action) -> None:
        log.debug("%s %s %s: started", action.kind, action.resource.kind, action.resource.name)

    def action_finished(self, action: Action, error: BatchopsError | None) -> None:
        fields = {
            "event": "action",
            "action": str(action.kind),
            "kind": action.resource.kind,
            "resource": action.resource.name,
            "remote_id": action.resource.remote_id,
            "reason": action.reason,
            "ok": error is None,
        }
        if error is None:
            log.info(
                "%s %s %s (%s)",
                action.kind,
                action.resource.kind,
                action.resource.name,
                action.reason,
                extra=fields,
            )
        else:
            log.warning(
                "%s %s %s failed: %s",
                action.kind,
                action.resource.kind,
                action.resource.name,
                error,
                extra={**fields, "error": str(error)},
            )

    def transfer_progress(self, action: Action, done: int, total: int) -> None:
        log.debug("%s %s: %d/%d bytes", action.kind, action.resource.name, done, total)
