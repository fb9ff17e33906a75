"""`batchops status [PATHS...]`: one row per declared job, from two list calls and local records.

A rich table on a terminal, plain columns otherwise, or ``--output json`` (formatVersion 1).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from batchops.cli.backend import (
    add_backend_flags,
    default_paths,
    open_provider,
    project_of,
    root_of,
    settings_from_args,
)
from batchops.cli.plan import add_selector_flags, selector_of
from batchops.config import price_table
from batchops.errors import EXIT_OK
from batchops.manifest.select import select
from batchops.plan import JobView
from batchops.plan.canary import CanaryState, canary_state
from batchops.plan.graph import Gate, gates, stage_rows
from batchops.plan.rowerrors import FailureSummary
from batchops.plan.views import Seen
from batchops.reconcile import Context, load_context, load_inputs
from batchops.render.plan import stages_data, stages_text
from batchops.render.status import (
    failure_lines,
    status_json,
    status_row,
    status_table,
    status_text,
)
from batchops.textsafe import json_text

EMBEDDED_NOTE = (
    "batchops: on the embedded backend, jobs progress only while `apply --wait` or "
    "`watch` runs, or under `batchops serve`"
)


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        parents=parents,
        help="each declared job: state, rows, results",
        description="Show one row per declared job: the state of its latest job on the account, "
        "progress, succeeded and failed rows, tokens, what it spent and whether its results on "
        "disk are verified, then the failed rows' reasons and a pipeline's stages. Reads the "
        "account (two list calls) and local files; changes nothing. Exits 0 whatever the jobs' "
        "states (1 on an error); `apply` is what exits 3 for a failed job.",
    )
    p.add_argument("paths", nargs="*", metavar="PATHS", help="manifests (default: jobs/)")
    add_backend_flags(p)
    add_selector_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root, settings = root_of(args), settings_from_args(args)
    paths = default_paths(args, root, settings)
    desired, infos = load_inputs(paths, root=root, project_file=settings.project_file)
    selection = select(desired, selector_of(args))
    inputs = (selection.desired, infos)
    with open_provider(settings, root=root) as provider:
        ctx = load_context(provider, root=root, project=project_of(settings, root), inputs=inputs)
    if settings.backend_choice() == "embedded":
        print(EMBEDDED_NOTE, file=sys.stderr)
    prices = price_table(settings.project_file)
    views = ctx.views()
    waiting = gates(views, ctx.desired.waiting, ctx.failed_rows)
    seen = ctx.seen if any(v.decl.canary for v in views) else None
    rows = [
        status_row(
            view,
            prices.lookup(view.decl.model, view.decl.provider),
            _failures(ctx, view.decl.name),
            _waits(waiting, view.decl.name),
            _canary(seen, view, ctx.project),
        )
        for view in views
    ]
    stages = stage_rows(views, waiting, ctx.failed_rows)
    outside = selection.outside_jobs
    if args.output == "json":
        data = {**status_json(rows), "stages": stages_data(stages), "outsideSelection": outside}
        print(json_text(data, indent=2))
        return EXIT_OK
    if sys.stdout.isatty():
        from rich.console import Console

        Console().print(status_table(rows))
        lines = failure_lines(rows)
        if lines:
            print("\n".join(lines))
    else:
        print(status_text(rows))
    for line in stages_text(stages):
        print(line)
    if outside:
        print(f"{outside} job{'' if outside == 1 else 's'} outside the selection not shown.")
    return EXIT_OK


def _canary(seen: Seen | None, view: JobView, project: str) -> CanaryState | None:
    """Where the job's canary stands (its verdict: failed rows and responseFormat), while it
    has no full job."""
    if seen is None or view.decl.canary is None or view.latest is not None:
        return None
    state = canary_state(view, seen, project, full_job_too=True)
    return state if state is not None and state.job is not None else None


def _failures(ctx: Context, name: str) -> FailureSummary | None:
    found = ctx.failed_rows.get(name)
    return found.summary if found is not None else None


def _waits(found: dict[str, Gate], name: str) -> tuple[str, ...]:
    gate = found.get(name)
    return gate.waits_on if gate is not None else ()
