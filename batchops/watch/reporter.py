"""A ``Reporter`` (see ``batchops.apply``) that logs one line per finished action.

``batchops.watch.service`` hands it to ``reconcile.run_pass``; the daemon has no terminal, so
there are no progress bars, and transfers are logged at debug level only.
"""

from __future__ import annotations

import logging

from batchops.errors import BatchopsError
from batchops.plan import Action

log = logging.getLogger("batchops.watch.actions")


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
