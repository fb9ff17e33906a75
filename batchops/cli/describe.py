"""`batchops describe NAME`: one job's whole history, in text or ``--output json``.

Every owned job of that name on the account (attempts, continuations, older specs) with its times,
state, server message and row counts, plus where its results are on disk when a manifest declares
it. Manifests are read from PATHS (default: jobs/) only to find the declaration; a job no manifest
declares (say, one left for ``--prune``) is described from the account alone.
"""

from __future__ import annotations

import argparse
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
from batchops.config import Settings
from batchops.errors import EXIT_OK
from batchops.history import JobHistory, history, owned_by_name, owned_jobs
from batchops.money import Price, shipped_prices
from batchops.plan import JobView
from batchops.providers import RemoteJob
from batchops.reconcile import load_context, load_inputs
from batchops.render.describe import describe_json, describe_text
from batchops.render.status import status_row
from batchops.textsafe import json_text


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("describe", parents=parents,
                       help="one job's history: attempts, continuations, states, rows, results",
                       )  # fmt: skip
    p.add_argument("name", metavar="NAME", help="a job name")
    p.add_argument("--paths", nargs="*", default=None, metavar="PATH",
                   help="manifests declaring it (default: jobs/)")  # fmt: skip
    add_backend_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings, root = settings_from_args(args), root_of(args)
    project = project_of(settings, root)
    paths = default_paths(argparse.Namespace(paths=args.paths), root, settings)
    exists = any(p.exists() for p in paths)
    inputs = load_inputs(paths, root=root, project_file=settings.project_file) if exists else None
    declared = inputs is not None and any(j.name == args.name for j in inputs[0].jobs)
    with open_provider(settings, root=root) as provider:
        if inputs is not None and declared:
            ctx = load_context(provider, root=root, project=project, inputs=inputs)
            view = next(v for v in ctx.views() if v.decl.name == args.name)
            h = _declared_history(view, owned_by_name(args.name, ctx.observed.jobs, project))
            h = replace(h, spent=status_row(view, _price(settings, view.decl.model)).spent)
        else:  # described from the account alone; unknown or foreign names are errors
            found = owned_jobs([args.name], provider.list_jobs(), project)[args.name]
            h = history(args.name, found)
    print(json_text(describe_json(h), indent=2) if args.output == "json" else describe_text(h))
    return EXIT_OK


def _price(settings: Settings, model: str) -> Price | None:
    project = settings.project_file
    return shipped_prices().with_overrides(project.prices if project else ()).lookup(model)


def _declared_history(view: JobView, found: list[RemoteJob]) -> JobHistory:
    row = status_row(view)
    last = view.result.record.last_job_id if view.result and view.result.record else None
    src = view.decl.source
    return history(view.decl.name, found, current_base=view.base_id,
                   declared=f"{src.path}:{src.line}",
                   results=(row.results_path, row.results, last))  # fmt: skip
