"""`batchops describe NAME`: one job's whole history, in text or ``--output json``.

Every owned job of that name on the account (attempts, continuations, older specs) with its times,
state, server message and row counts, plus where its results are on disk when a manifest declares
it. Manifests are read from PATHS (default: jobs/) only to find the declaration; a job no manifest
declares (say, one left for ``--prune``) is described from the account alone. Renames in the
project file (``moved``) are followed: an old name describes the new one, whose history includes
the jobs it adopted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from batchops.cli.backend import (
    add_backend_flags,
    default_paths,
    open_provider,
    project_of,
    root_of,
    settings_from_args,
)
from batchops.config import PROJECT_FILE, Settings, price_table
from batchops.errors import EXIT_OK, ConfigError
from batchops.history import (
    JobHistory,
    current_name,
    former_names,
    history,
    job_id_of,
    name_of,
    owned_by_name,
    owned_following_moves,
)
from batchops.manifest import JobDecl
from batchops.manifest.hints import suggest
from batchops.money import Price
from batchops.plan import JobView
from batchops.plan.canary import canary_name
from batchops.plan.graph import gates, stage_rows
from batchops.plan.rows import FailedRows
from batchops.providers import RemoteJob
from batchops.reconcile import load_context, load_inputs
from batchops.render.describe import describe_json, describe_text
from batchops.render.status import status_row
from batchops.textsafe import json_text


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "describe",
        parents=parents,
        help="one job's history: attempts, continuations, states, rows, results",
        description="Show every job of this project named NAME on the account, oldest first "
        "(attempts, continuations after expiry, older specs), with its times, state, server "
        "message and row counts, and, when a manifest declares NAME, where its results are on "
        "disk, what it spent and its pipeline stage. A job no manifest declares is described "
        "from the account alone; renames under `moved` in batchops.yaml are followed. Changes "
        "nothing.",
    )
    p.add_argument("name", metavar="NAME", help="a job name")
    p.add_argument(
        "--paths",
        nargs="*",
        default=None,
        metavar="PATH",
        help="manifests declaring it (default: jobs/)",
    )
    add_backend_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings, root = settings_from_args(args), root_of(args)
    project = project_of(settings, root)
    paths = default_paths(argparse.Namespace(paths=args.paths), root, settings)
    exists = any(p.exists() for p in paths)
    inputs = load_inputs(paths, root=root, project_file=settings.project_file) if exists else None
    moved = settings.project_file.moved if settings.project_file else ()
    name = current_name(args.name, moved)
    if name != args.name:
        print(
            f"note: '{args.name}' was renamed to '{name}' (moved in {PROJECT_FILE})",
            file=sys.stderr,
        )
    declared = inputs is not None and any(j.name == name for j in inputs[0].jobs)
    members = [j.name for j in inputs[0].matrix(name)] if inputs else []
    if members and not declared:
        raise ConfigError(
            f"'{name}' is a matrix of {len(members)} jobs; describe one of them: "
            f"{', '.join(members)}"
        )
    failures = None
    with open_provider(settings, root=root) as provider:
        if inputs is not None and declared:
            ctx = load_context(provider, root=root, project=project, inputs=inputs)
            views = ctx.views()
            view = next(v for v in views if v.decl.name == name)
            jobs = ctx.observed.jobs
            found = sorted(
                {
                    j.key: j
                    for n in (name, canary_name(name), *former_names(name, moved))
                    for j in owned_by_name(n, jobs, project)
                }.values(),
                key=lambda j: (j.created, j.key),
            )
            h = _declared_history(view, found)
            h = replace(
                h,
                spent=status_row(view, _price(settings, view.decl)).spent,
                stage=_stage(views, ctx.desired.waiting, ctx.failed_rows, name),
            )
            found_rows = ctx.failed_rows.get(name)
            failures = found_rows.summary if found_rows is not None else None
        else:  # described from the account alone; unknown or foreign names are errors
            listed = list(provider.list_jobs())
            try:
                owned = owned_following_moves([name], listed, project, moved)
            except ConfigError:  # neither declared nor on the account: say what there is
                raise _unknown(name, inputs[0].jobs if inputs else (), listed, project) from None
            h = history(name, next(iter(owned.values())))
    print(
        json_text(describe_json(h, failures), indent=2)
        if args.output == "json"
        else describe_text(h, failures)
    )
    return EXIT_OK


def _unknown(
    name: str, declared: Sequence[JobDecl], listed: list[RemoteJob], project: str
) -> ConfigError:
    """As ``batchops results`` says it: a did-you-mean over the declared jobs (a matrix by its
    name too) and this project's jobs on the account, or else the declared jobs."""
    names = sorted({j.name for j in declared} | {j.group for j in declared if j.group})
    owned = {name_of(job_id_of(j)) for j in listed if j.owner == project}
    hint = suggest(name, {*names, *owned})
    if not hint and names:
        hint = f" (declared: {', '.join(names)})"
    return ConfigError(
        f"unknown job '{name}': no manifest declares it and the account has no job of this "
        f"project by that name{hint}"
    )


def _stage(
    views: list[JobView],
    waiting: frozenset[str],
    failed: Mapping[str, FailedRows],
    name: str,
) -> str | None:
    """``stage 2 of 2 (judge): waiting, waits on generate``; None outside a pipeline."""
    stages = stage_rows(views, gates(views, waiting, failed), failed)
    mine = next((s for s in stages if name in s.jobs), None)
    if mine is None:
        return None
    waits = f", waits on {', '.join(mine.waits_on)}" if mine.waits_on else ""
    last = max(s.stage for s in stages)
    return f"stage {mine.stage} of {last} ({mine.name}): {mine.state}{waits}"


def _price(settings: Settings, job: JobDecl) -> Price | None:
    return price_table(settings.project_file).lookup(job.model, job.provider)


def _declared_history(view: JobView, found: list[RemoteJob]) -> JobHistory:
    row = status_row(view)
    last = view.result.record.last_job_id if view.result and view.result.record else None
    src = view.decl.source
    return history(
        view.decl.name,
        found,
        current_base=view.base_id,
        declared=f"{src.path}:{src.line}",
        results=(row.results_path, row.results, last),
    )
