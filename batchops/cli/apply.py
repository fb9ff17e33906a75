"""`batchops apply [PATHS... | PLANFILE]`: run reconcile passes, report, choose the exit code.

With ``--wait`` it keeps passing (sleeping on a stop event between passes) until every declared job
has finished and its results are on disk, or ``--timeout`` runs out. ``apply PLANFILE`` applies a
plan saved by ``plan --out`` only if the world still looks as it did then (else StalePlanError).
Every pass that sends rows shows what they cost first (a later pass of ``--wait``: a pipeline's
next stage, a retry, a resume), and a budget refuses it before anything of it is sent.
Exit codes: 0 converged or progressing, 1 error, 3 a declared job failed, has more failed rows
than its spec.maxFailedRows, or expired for good, 4 refused by a budget (nothing of that pass
sent), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from batchops.apply import NullReporter
from batchops.cli.apply_output import Printer, states_text
from batchops.cli.backend import (
    add_backend_flags,
    default_paths,
    describe_backend,
    open_provider,
    project_of,
    root_of,
    settings_from_args,
)
from batchops.cli.common import duration, positive_int
from batchops.cli.plan import add_pass_flags, money_options, pass_options, selector_of
from batchops.cli.reporters import reporter_for
from batchops.config import ProjectConfig, Settings
from batchops.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    BatchopsError,
    BudgetError,
    ConfigError,
    DeadlineExceededError,
    Terminated,
)
from batchops.manifest.select import Selector
from batchops.reconcile import (
    Inputs,
    PassOptions,
    PassResult,
    SavedPlanCheck,
    load_inputs,
    run_pass,
)

# Seconds between passes under --wait: the local backend finishes in seconds, while Fireworks jobs
# take minutes to hours and every pass costs two list calls.
POLL_LOCAL, POLL_REMOTE = 2.0, 15.0
MAX_PLAN_BYTES = 64 * 2**20  # a saved plan of 10,000 jobs is a few MB; a bigger file is no plan


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "apply",
        parents=parents,
        help="make the account match the manifests",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a reconcile pass: upload datasets, create jobs, resume expired ones, "
        "download and merge results.\nWith --wait, keep reconciling until every declared job "
        "has finished and its results are on disk.\nGiven a plan saved by `plan --out`, apply "
        "exactly that plan, or refuse it if the account changed since.",
        epilog="exit codes: 0 converged or progressing, 1 error, 3 a declared job failed, has "
        "more failed rows than its spec.maxFailedRows, or expired with no resumes left, "
        "4 over a budget (nothing sent), 130 interrupted",
    )
    p.add_argument("paths", nargs="*", metavar="PATHS", help="manifests (default: jobs/) or a plan")
    add_backend_flags(p)
    add_pass_flags(p)
    p.add_argument("--wait", action="store_true", help="keep going until every job is done")
    p.add_argument(
        "--timeout",
        type=duration,
        default=None,
        metavar="DURATION",
        help="how long the whole command may take, e.g. 30, 90s, 20m",
    )
    p.add_argument(
        "--poll-interval",
        type=duration,
        default=None,
        metavar="DURATION",
        help=f"seconds between passes with --wait (default {POLL_LOCAL:g} on the local backend, "
        f"{POLL_REMOTE:g} on Fireworks)",
    )
    p.add_argument(
        "--parallelism",
        type=positive_int,
        default=None,
        help="concurrent actions (default: batchops.yaml, else 8)",
    )
    p.add_argument(
        "-y",
        "--auto-approve",
        action="store_true",
        help="do not ask before deleting or replacing (needed for --prune deletions "
        "without a terminal, unless applying a saved plan)",
    )
    p.set_defaults(func=run)


@dataclass
class _Run:
    paths: list[Path]
    root: Path
    project: str
    options: PassOptions
    saved: SavedPlanCheck | None
    project_file: ProjectConfig | None = None


def run(args: argparse.Namespace) -> int:
    settings, root = settings_from_args(args), root_of(args)
    _project_defaults(args, settings)
    job = _prepare(args, settings, root)
    inputs = load_inputs(job.paths, root=root, project_file=settings.project_file)  # nothing sent
    stop = threading.Event()
    backend = describe_backend(settings, root)
    printer = Printer(args, settings, saved=job.saved is not None, backend=backend)
    json_output = args.output == "json"
    try:
        with (
            _interrupt_sets(stop),
            open_provider(settings, root=root) as provider,
            reporter_for(json_output=json_output) as rep,
        ):
            if args.poll_interval is None:
                remote = backend["kind"] == "fireworks"
                args.poll_interval = POLL_REMOTE if remote else POLL_LOCAL
            result = _loop(job, args, provider, printer.log(rep), stop, printer, inputs)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        term = isinstance(exc, Terminated)
        how = "terminated" if term else "interrupted"
        print(interrupted_message(printer.in_flight(), how=how), file=sys.stderr, flush=True)
        return EXIT_TERMINATED if term else EXIT_INTERRUPTED
    return printer.finish(result, args)


def interrupted_message(jobs: list[str], *, how: str = "interrupted") -> str:
    """What Ctrl-C (or SIGTERM) leaves behind: remote jobs do not stop with this process."""
    if not jobs:
        return how
    names = ", ".join(jobs)
    them = "it" if len(jobs) == 1 else "them"
    return (
        f"{how}: the remote jobs keep running on the account, and are billed: "
        f"{names}.\nFollow {them} with `batchops status`; stop one with "
        "`batchops cancel NAME`."
    )


def _project_defaults(args: argparse.Namespace, settings: Settings) -> None:
    """Flags not given take the project file's value, then the built-in default."""
    project = settings.project_file
    if args.poll_interval is None and project is not None:
        args.poll_interval = project.poll_interval
    if args.parallelism is None:
        args.parallelism = (project.parallelism if project else None) or 8


def _prepare(args: argparse.Namespace, settings: Settings, root: Path) -> _Run:
    project = project_of(settings, root)
    saved_file = _saved_plan_file(args.paths)
    if saved_file is None:
        paths = default_paths(args, root, settings)
        return _Run(paths, root, project, pass_options(args, settings), None, settings.project_file)
    if selector_of(args).active:
        raise ConfigError("a saved plan keeps the selection it was made with; drop --job and -l")
    data = json.loads(saved_file.read_text(encoding="utf-8"))
    if data.get("project") != project:
        raise ConfigError(f"the saved plan is for project {data.get('project')!r}, not {project!r}")
    o = data["options"]
    options = PassOptions(
        prune=o["prune"],
        allow_empty=o["allowEmpty"],
        retry_failed=o["retryFailed"],
        download=o["download"],
        canary_only=bool(o.get("canaryOnly")),
        max_workers=args.parallelism,
        selector=Selector.from_json(data.get("selector")),
        narrowed=bool(data.get("narrowed")),
        **money_options(args, settings),
    )
    changes = tuple((a["kind"], a["resource"]["remoteId"]) for a in data["actions"] if a["change"])
    check = SavedPlanCheck(fingerprint=data["fingerprint"], actions=changes)
    return _Run(
        [Path(p) for p in data["paths"]],
        Path(data["root"]),
        project,
        options,
        check,
        settings.project_file,
    )


def _saved_plan_file(paths: list[str]) -> Path | None:
    """A single argument that is a JSON plan saved by `plan --out` (manifests are YAML)."""
    if len(paths) != 1 or not Path(paths[0]).is_file():
        return None
    if Path(paths[0]).stat().st_size > MAX_PLAN_BYTES:
        return None
    try:
        data = json.loads(Path(paths[0]).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep JSON is no plan of ours
        return None
    is_plan = isinstance(data, dict) and "fingerprint" in data and "formatVersion" in data
    return Path(paths[0]) if is_plan else None


@contextmanager
def _interrupt_sets(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C / SIGTERM set the stop event (workers stop waiting), then interrupt as usual."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _loop(
    job: _Run,
    args: argparse.Namespace,
    provider: Any,
    reporter: NullReporter,
    stop: threading.Event,
    printer: Printer,
    inputs: Inputs,
) -> PassResult:
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    provider.set_deadline(deadline)  # every call, retry and read of the command stops there
    saved = job.saved
    first_inputs: Inputs | None = inputs
    last: PassResult | None = None
    while True:
        try:
            result = run_pass(
                job.paths,
                root=job.root,
                provider=provider,
                project=job.project,
                options=job.options,
                reporter=reporter,
                stop=stop,
                saved=saved,
                on_plan=printer.on_plan,
                inputs=first_inputs,
                project_file=job.project_file,
            )
        except BudgetError:  # the plan printed shows what is over; nothing of it was sent
            printer.refused()
            raise
        except DeadlineExceededError as exc:  # observing, before any action
            if last is None:
                raise _timeout_error(args.timeout, None) from exc
            return _timed_out(last, args.timeout)  # the last whole pass says what is left
        printer.on_result(result)
        # Only the first pass is the saved plan, and only it may reuse the inputs validated
        # before the backend started; later passes reload what the files say now.
        saved, first_inputs, last = None, None, result
        if deadline is not None and time.monotonic() >= deadline and not result.converged:
            return _timed_out(result, args.timeout)
        if not args.wait or result.converged or _hard_errors(result):
            return result
        left = args.poll_interval if deadline is None else deadline - time.monotonic()
        pause = 0.0 if result.unblocked else args.poll_interval  # a stage can start now
        if stop.wait(max(0.0, min(pause, left))):
            raise KeyboardInterrupt


def _timed_out(result: PassResult, timeout: float) -> PassResult:
    """``result`` (its failed jobs, states and errors still reported) closed by the timeout."""
    result.errors[:] = [e for e in result.errors if type(e) is not DeadlineExceededError]
    result.errors.append(_timeout_error(timeout, result))
    return result


def _hard_errors(result: PassResult) -> bool:
    """Errors a later pass would not fix (retryable API trouble is retried on the next pass)."""
    return any(not e.retryable for e in result.errors)


def _timeout_error(timeout: float, result: PassResult | None) -> BatchopsError:
    states = f" ({states_text(result)})" if result is not None else ""
    return BatchopsError(f"--timeout {timeout:g} s reached before convergence{states}")
