"""`batchops delete NAME...`: remove owned jobs (and their `<id>-out` datasets), as --prune would.

A NAME is a manifest job name (every attempt, continuation and older spec of it) or one job ID;
a matrix's declared name stands for every job of the matrix, as ``--job NAME`` does.
Renames in the project file (``moved``) are followed: an old name is its new name, and a new name
includes the jobs it adopted. Only jobs carrying this project's mark are touched. ``delete``
refuses a job a manifest still declares (or adopts), unless ``--force``: the next apply would run
it again. On a terminal the command lists what goes and
asks; without one it needs ``-y``. ``batchops.cli.cancel`` shares this module: it stops only the
jobs still running. Results already on disk are never touched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from batchops.apply import apply_plan
from batchops.cli.backend import (
    add_backend_flags,
    default_paths,
    open_provider,
    project_of,
    root_of,
    settings_from_args,
)
from batchops.cli.confirm import confirm
from batchops.cli.reporters import LineReporter
from batchops.config import PROJECT_FILE, Settings
from batchops.errors import EXIT_ERROR, EXIT_OK, ConfigError
from batchops.history import Target, current_name, name_of, owned_following_moves, targets
from batchops.manifest.desired import Desired
from batchops.manifest.loader import load_partial
from batchops.plan import Action, Kind, Plan, Resource, sort_actions
from batchops.render.plan import action_line
from batchops.textsafe import inert, json_text


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "delete",
        parents=parents,
        help="delete owned jobs by name (with their output datasets)",
        description="Delete every job of this project named NAME (all attempts, continuations "
        "and older specs) and the output datasets batchops named for them. A running job stops. "
        "Results on disk are kept. Jobs without this project's mark are never touched.",
    )
    add_removal_flags(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="delete even a job a manifest still declares (the next apply re-runs it)",
    )
    p.add_argument(
        "--paths",
        nargs="*",
        default=None,
        metavar="PATH",
        help="the manifests to check for declarations (default: jobs/)",
    )
    p.set_defaults(func=lambda args: run_removal(args, cancel=False))


def add_removal_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="+", metavar="NAME", help="a job name, or one job's ID")
    p.add_argument(
        "-y", "--auto-approve", action="store_true", help="do not ask (required without a terminal)"
    )
    add_backend_flags(p)


def run_removal(args: argparse.Namespace, *, cancel: bool) -> int:
    settings, root = settings_from_args(args), root_of(args)
    project = project_of(settings, root)
    verb = "cancel" if cancel else "delete"
    moved = settings.project_file.moved if settings.project_file else ()
    desired = _declared(default_paths(args, root, settings), settings, root)
    names = _with_members(args.names, desired)
    with open_provider(settings, root=root) as provider:
        found = owned_following_moves(names, provider.list_jobs(), project, moved)
        if not cancel and not args.force and desired is not None:
            _refuse_declared(args.names, desired)
        plan = _plan(targets(found, running_only=cancel), project, cancel=cancel)
        if not plan.actions:
            return _report(
                args,
                plan,
                [],
                verb,
                f"Nothing to {verb}: no job of {', '.join(args.names)} is running."
                if cancel
                else "",
            )
        if args.output != "json":
            print("\n".join(action_line(a) for a in plan.actions), flush=True)
        n = len(plan.actions)
        confirm(
            f"{verb} {n} job{'' if n == 1 else 's'}",
            auto_approve=args.auto_approve,
            how="pass -y (--auto-approve)",
        )
        reporter = LineReporter(to_stderr=args.output == "json")
        applied = apply_plan(plan, provider=provider, root=root, reporter=reporter)
    errors = [str(e) for e in applied.errors]
    return _report(args, plan, errors, verb, "")


def _declared(paths: list[Path], settings: Settings, root: Path) -> Desired | None:
    """What the manifests declare (their valid documents), or None without any manifest."""
    paths = [p for p in paths if p.exists()]
    if not paths:
        return None
    return load_partial(paths, root=root, project=settings.project_file)[0]


def _members(name: str, desired: Desired | None) -> list[str]:
    """A matrix's declared name -> its jobs (as ``--job NAME`` selects them); else []."""
    if desired is None or any(j.name == name for j in desired.jobs):
        return []
    return [j.name for j in desired.matrix(name)]


def _with_members(names: list[str], desired: Desired | None) -> list[str]:
    moved = desired.moved if desired is not None else ()
    out: list[str] = []
    for given in names:
        out += _members(current_name(given, moved), desired) or [given]
    return list(dict.fromkeys(out))


def _refuse_declared(names: list[str], desired: Desired) -> None:
    """A job a manifest declares, or adopts after a rename, would be re-run (and re-billed) by
    the next apply: deleting it needs --force. A matrix's name stands for all its jobs."""
    declared = {j.name: j.source for j in desired.jobs}
    problems = []
    for given in names:
        old = name_of(given)
        name = current_name(old, desired.moved)
        members = _members(name, desired)
        src = declared.get(members[0] if members else name)
        if src is None:
            continue
        what = f"matrix '{name}' ({len(members)} jobs)" if members else f"job '{name}'"
        adopted = "" if name == old else f" (renamed from {old} in {PROJECT_FILE})"
        problems.append(
            f"{what}{adopted} is declared by {src.path}:{src.line}; the next "
            "apply would run it again"
        )
    if problems:
        raise ConfigError(
            "; ".join(problems) + ": remove it from the manifests first, or pass --force"
        )


def _plan(found: list[Target], project: str, *, cancel: bool) -> Plan:
    return Plan(
        actions=sort_actions(_action(t, cancel=cancel) for t in found),
        fingerprint="",
        project=project,
    )


def _action(target: Target, *, cancel: bool) -> Action:
    state = target.state.removeprefix("JOB_STATE_").lower() or "unknown"
    details: dict[str, object] = {"state": target.state}
    reason = f"delete ({state})"
    if cancel:
        reason = f"cancel ({state}): it stops and is no longer billed"
        details["cancel"] = True  # the provider's cancel (Fireworks has none: a delete stops it)
    if target.output_dataset:
        details["outputDataset"] = target.output_dataset
        reason += f"; its output dataset {target.output_dataset} too"
    return Action(Kind.PRUNE_JOB, Resource("job", target.name, target.job_id), reason, details)


def _report(
    args: argparse.Namespace, plan: Plan, errors: list[str], verb: str, nothing: str
) -> int:
    code = EXIT_ERROR if errors else EXIT_OK
    if args.output == "json":
        body = {
            "formatVersion": 1,
            "command": verb,
            "exitCode": code,
            "errors": errors,
            "jobs": [
                {
                    "name": a.resource.name,
                    "remoteId": a.resource.remote_id,
                    "state": a.details.get("state"),
                    "outputDataset": a.details.get("outputDataset"),
                }
                for a in plan.actions
            ],
        }
        print(json_text(body, indent=2))
        return code
    for message in errors:
        print(f"error: {inert(message)}", file=sys.stderr)
    done = len(plan.actions) - len(errors)
    past = "cancelled" if verb == "cancel" else "deleted"
    print(nothing or f"{done} job{'' if done == 1 else 's'} {past}.")
    return code
