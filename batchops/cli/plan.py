"""`batchops plan`: what apply would do, and why. Loads and validates everything before any call.

Exit codes: 0, or with ``--detailed-exitcode`` 2 when remote changes are pending (downloads are
local and do not count); 1 on error. ``--out FILE`` saves the plan (JSON, with its fingerprint) for
``batchops apply FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from batchops.cli.backend import (
    add_backend_flags,
    default_paths,
    describe_backend,
    open_provider,
    paths_narrowed,
    project_of,
    remote_title,
    root_of,
    settings_from_args,
)
from batchops.cli.common import append_step_summary, write_text_atomic
from batchops.config import Settings, price_table
from batchops.errors import EXIT_CHANGES, EXIT_OK, EXIT_REFUSED, BudgetError
from batchops.manifest.select import Selector
from batchops.money import Budget
from batchops.reconcile import PassOptions, load_and_plan, load_inputs, row_failures
from batchops.render.failures import failure_annotations, failures_markdown
from batchops.render.plan import plan_json, plan_markdown, plan_text
from batchops.textsafe import inert, json_text


def add_pass_flags(p: argparse.ArgumentParser) -> None:
    """Flags plan and apply share."""
    p.add_argument(
        "--prune", action="store_true", help="delete owned resources no manifest declares"
    )
    p.add_argument("--allow-empty", action="store_true", help="allow --prune with nothing declared")
    p.add_argument("--retry-failed", action="store_true", help="resubmit failed jobs")
    p.add_argument("--no-download", action="store_true", help="skip downloading results")
    p.add_argument(
        "--canary-only",
        action="store_true",
        help="only the canaries (spec.canary), not the full spend",
    )
    add_max_cost_flag(p)
    add_selector_flags(p)


def add_max_cost_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-cost",
        type=_dollars,
        metavar="USD",
        help="refuse a plan costing more (exit 4; see docs/cost.md)",
    )


def _dollars(text: str) -> float:
    try:
        value = float(text.removeprefix("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an amount of US dollars: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--max-cost must be a positive amount, not {text!r}")
    return value


def money_options(args: argparse.Namespace, settings: Settings | None) -> dict[str, Any]:
    """PassOptions' budget and prices: --max-cost and the project file's `budget` / `prices`."""
    project = settings.project_file if settings is not None else None
    budget = Budget(
        project_max=project.max_cost if project else None,
        cli_max=getattr(args, "max_cost", None),
        compare=project.budget_compare if project else "worstCase",
    )
    return {
        "budget": budget,
        "prices": price_table(project),
        "tokenizers": project.tokenizer_files() if project else {},
    }


def add_selector_flags(p: argparse.ArgumentParser) -> None:
    """--job and -l: plan, apply and status work on the selected jobs (and the datasets they
    read) only; the rest is left alone and counted in one line."""
    p.add_argument("--job", action="append", metavar="NAME", help="only this job (repeatable)")
    p.add_argument(
        "-l",
        "--selector",
        action="append",
        metavar="KEY=VALUE",
        dest="labels",
        help="only jobs whose metadata.labels have KEY=VALUE (repeatable: all of them)",
    )


def selector_of(args: argparse.Namespace) -> Selector:
    return Selector.of(getattr(args, "job", None), getattr(args, "labels", None))


def pass_options(args: argparse.Namespace, settings: Settings | None = None) -> PassOptions:
    return PassOptions(
        prune=args.prune,
        allow_empty=args.allow_empty,
        retry_failed=args.retry_failed,
        download=not args.no_download,
        max_workers=getattr(args, "parallelism", 8),
        canary_only=getattr(args, "canary_only", False),
        selector=selector_of(args),
        narrowed=paths_narrowed(args, root_of(args), settings),
        **money_options(args, settings),
    )


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plan",
        parents=parents,
        help="show what apply would do, and why",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compare the manifests with the account and print what `apply` would do, "
        "with the reason for each action.\nRemote changes (create, replace, resume, prune) and "
        "local ones (downloads) are listed apart. Sends no writes.",
        epilog="exit codes: 0 ok (with --detailed-exitcode: no remote changes), 1 error, "
        "2 remote changes pending (--detailed-exitcode), 4 over a budget (the plan is shown)",
    )
    p.add_argument(
        "paths", nargs="*", metavar="PATHS", help="manifests or folders (default: jobs/)"
    )
    add_backend_flags(p)
    add_pass_flags(p)
    p.add_argument(
        "--detailed-exitcode", action="store_true", help="exit 2 when remote changes are pending"
    )
    p.add_argument("--out", type=Path, metavar="FILE", help="save the plan (JSON) for apply")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root, settings = root_of(args), settings_from_args(args)
    paths, options = default_paths(args, root, settings), pass_options(args, settings)
    inputs = load_inputs(paths, root=root, project_file=settings.project_file)  # nothing sent yet
    backend = describe_backend(settings, root)
    with open_provider(settings, root=root) as provider:
        plan = load_and_plan(
            paths,
            root=root,
            provider=provider,
            project=project_of(settings, root),
            options=options,
            inputs=inputs,
            project_file=settings.project_file,
        )
    body = plan_json(plan, backend=backend)
    if args.out:
        saved = {
            **body,
            "paths": [str(p) for p in paths],
            "root": str(root),
            "selector": options.selector.to_json(),
            "narrowed": options.narrowed,
        }
        write_text_atomic(args.out, json.dumps(saved, indent=2) + "\n")
    text = plan_text(plan, backend=backend["text"], remote=remote_title(backend))
    print(json_text(body, indent=2) if args.output == "json" else text)
    rows = row_failures(plan, {})
    if settings.github_actions and (notes := failure_annotations(plan, rows)):
        print(notes, file=sys.stderr, flush=True)
    if settings.step_summary:
        summary = plan_markdown(plan, backend=backend["text"]) + failures_markdown(plan, rows)
        append_step_summary(settings.step_summary, summary)
    if plan.cost is not None and plan.cost.refusals:  # the plan above shows what is over
        print(f"error: {inert(str(BudgetError(plan.cost.refusals)))}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_CHANGES if args.detailed_exitcode and plan.remote_changes else EXIT_OK
