"""`batchops apply [PATHS... | PLANFILE]`: run reconcile passes, report, choose the exit code.

With ``--wait`` it keeps passing (sleeping on a stop event between passes) until every declared job
has finished and its results are on disk, or ``--timeout`` runs out. ``apply PLANFILE`` applies a
plan saved by ``plan --out`` only if the world still looks as it did then (else StalePlanError).
Exit codes: 0 converged or progressing, 1 error, 3 a declared job failed, has more failed rows
than its spec.maxFailedRows, or expired for good, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
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

from batchops.apply import NullReporter, SkippedError
from batchops.cli.backend import (
    add_backend_flags,
    default_paths,
    describe_backend,
    open_provider,
    project_of,
    remote_title,
    root_of,
    settings_from_args,
)
from batchops.cli.common import append_step_summary, duration, positive_int
from batchops.cli.confirm import ApplyGate, NotConfirmedError, ask_terminal
from batchops.cli.plan import add_pass_flags, money_options, pass_options, selector_of
from batchops.config import ProjectConfig, Settings
from batchops.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_TERMINATED,
    BatchopsError,
    ConfigError,
    DeadlineExceededError,
    Terminated,
)
from batchops.manifest.select import Selector
from batchops.plan import Action, Kind, Plan
from batchops.reconcile import (
    Inputs,
    PassOptions,
    PassResult,
    SavedPlanCheck,
    load_inputs,
    run_pass,
)
from batchops.render.canary import canary_lines, canary_markdown
from batchops.render.failures import failure_annotations, failure_lines, failures_markdown
from batchops.render.plan import (
    SYMBOLS,
    action_line,
    errors_markdown,
    plan_markdown,
    plan_text,
    summary_line,
)
from batchops.textsafe import inert, json_text, md_text

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


class LineReporter(NullReporter):
    """One line per finished action (stderr for errors, and for everything when stdout carries
    JSON); progress bars are rich's job on a TTY. Workers call it from several threads: each line
    is one write under a lock (``print`` writes the text and the newline apart, so two threads'
    lines could share one)."""

    _write_lock = threading.Lock()

    def __init__(self, *, to_stderr: bool = False) -> None:
        self.to_stderr = to_stderr

    def action_finished(self, action: Action, error: BatchopsError | None) -> None:
        stream = sys.stderr if error or self.to_stderr else sys.stdout
        with self._write_lock:
            stream.write(_finished_text(action, error) + "\n")
            stream.flush()


class RichReporter(LineReporter):
    """LineReporter plus a progress bar per upload or download, when stdout is a terminal. The
    live display starts with the first transfer, after any confirmation prompt."""

    def __init__(self) -> None:
        from rich.progress import Progress

        super().__init__()
        self._progress = Progress(transient=True)
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._started = False

    def __enter__(self) -> RichReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self._progress.stop()

    def transfer_progress(self, action: Action, done_bytes: int, total_bytes: int) -> None:
        key = f"{action.kind}:{action.resource.remote_id}"
        with self._lock:
            if not self._started:
                self._progress.start()
                self._started = True
            if key not in self._tasks:
                from rich.markup import escape

                label = escape(f"{SYMBOLS[action.kind]} {inert(action.resource.name)}")
                self._tasks[key] = self._progress.add_task(label, total=total_bytes or None)
            self._progress.update(self._tasks[key], completed=done_bytes)

    def action_finished(self, action: Action, error: BatchopsError | None) -> None:
        self._progress.console.print(_finished_text(action, error), markup=False, highlight=False)


def _finished_text(action: Action, error: BatchopsError | None) -> str:
    r = action.resource
    where = f"{r.kind} {inert(r.name)} [{inert(r.remote_id)}]"
    if error is None:
        return f"  ✓ {SYMBOLS[action.kind]} {where}"
    return f"  ✗ {where}: {inert(error)}"


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
    printer = _Printer(args, settings, saved=job.saved is not None, backend=backend)
    json_output = args.output == "json"
    try:
        with (
            _interrupt_sets(stop),
            open_provider(settings, root=root) as provider,
            _reporter(json_output=json_output) as rep,
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


@contextmanager
def _reporter(*, json_output: bool) -> Iterator[NullReporter]:
    if sys.stdout.isatty() and not json_output:
        with RichReporter() as rich_reporter:
            yield rich_reporter
    else:
        yield LineReporter(to_stderr=json_output)


class _Outcomes(NullReporter):
    """Passes every report on, and keeps (pass, action, error) for the JSON document."""

    def __init__(self, inner: NullReporter, printer: _Printer) -> None:
        self.inner, self.printer = inner, printer
        self.lock = threading.Lock()

    def action_started(self, action: Action) -> None:
        self.inner.action_started(action)

    def transfer_progress(self, action: Action, done_bytes: int, total_bytes: int) -> None:
        self.inner.transfer_progress(action, done_bytes, total_bytes)

    def action_finished(self, action: Action, error: BatchopsError | None) -> None:
        with self.lock:
            self.printer.outcomes.append((self.printer.passes, action, error))
        self.inner.action_finished(action, error)


class _Printer:
    """Prints each pass's plan (the first whole, later ones only when they change something),
    asks for consent before deletions and replacements, and keeps what was done for the end."""

    def __init__(
        self, args: argparse.Namespace, settings: Settings, *, saved: bool, backend: dict[str, str]
    ) -> None:
        self.json = args.output == "json"
        self.backend_json = backend
        self.backend = backend["text"]
        self.remote = remote_title(backend)
        self.summary_file = settings.step_summary
        self.annotate = settings.github_actions
        self.passes = 0
        self.last_line = ""
        self.submitted = 0  # jobs created, replaced, retried or resumed over every pass
        self.reported: set[tuple[Kind, str]] = set()  # failures printed by a later pass
        self.first_plan: Plan | None = None
        self.last_plan: Plan | None = None
        self.outcomes: list[tuple[int, Action, BatchopsError | None]] = []
        self.gate = ApplyGate(
            auto_approve=args.auto_approve, saved_plan=saved, show=self._show, ask=self._ask
        )

    def on_result(self, result: PassResult) -> None:
        done = result.applied.done if result.applied else []
        self.submitted += sum(a.kind in _SUBMITS for a in done)

    def log(self, reporter: NullReporter) -> _Outcomes:
        return _Outcomes(reporter, self)

    def _show(self, plan: Plan) -> None:
        if self.json:  # text mode printed it already
            print(plan_text(plan, remote=self.remote), file=sys.stderr, flush=True)

    def _ask(self, question: str) -> str:
        return ask_terminal(question, stream_out=not self.json)

    def in_flight(self) -> list[str]:
        """Declared jobs submitted or still running when we stopped."""
        names = {a.resource.name for _, a, e in self.outcomes if e is None and a.kind in _SUBMITS}
        if self.last_plan is not None:
            names |= {a.resource.name for a in self.last_plan.actions if a.kind is Kind.WAIT}
        return sorted(names)

    def on_plan(self, plan: Plan) -> None:
        self._print_plan(plan)
        try:
            self.gate.check(plan)
        except NotConfirmedError as exc:
            if self.summary_file:  # the summary showed the plan: say it was not applied
                append_step_summary(
                    self.summary_file,
                    f"#### batchops apply: not applied, exit 1\n{errors_markdown([str(exc)])}",
                )
            raise

    def _print_plan(self, plan: Plan) -> None:
        self.passes += 1
        self.first_plan = self.first_plan or plan
        self.last_plan = plan
        if self.passes == 1 and self.summary_file:
            markdown = plan_markdown(plan, title="batchops apply", backend=self.backend)
            append_step_summary(self.summary_file, markdown)
        if self.json:
            return
        if self.passes == 1:
            # The backend is named when something is to happen; "No changes." stays one line.
            print(
                plan_text(plan, backend=self.backend if plan.actions else None, remote=self.remote),
                flush=True,
            )
            self.reported = {(a.kind, a.resource.remote_id) for a in plan.actions}
            self.last_line = summary_line(plan)  # plan_text's last line
            return
        for action in plan.actions:
            if action.is_change or self._newly_failed(action):
                print(action_line(action), flush=True)
        line = summary_line(plan)
        if line != self.last_line:
            print(line, flush=True)
            self.last_line = line

    def _newly_failed(self, action: Action) -> bool:
        """A job that failed while --wait waited shows at once, with the server's reason."""
        key = (action.kind, action.resource.remote_id)
        if action.kind not in (Kind.FAILED, Kind.EXPIRED) or key in self.reported:
            return False
        self.reported.add(key)
        return True

    def finish(self, result: PassResult, args: argparse.Namespace) -> int:
        code = _exit_code(result)
        errors = [inert(e) for e in result.errors]
        for message in errors:
            print(f"error: {message}", file=sys.stderr)
        for line in failure_lines(result.plan, result.row_failures):  # inert already
            print(line, file=sys.stderr)
        if self.annotate and (notes := failure_annotations(result.plan, result.row_failures)):
            print(notes, file=sys.stderr, flush=True)
        for name, record in sorted((result.applied.records if result.applied else {}).items()):
            if record.counts.nonconforming:  # responseFormat: failed rows the server called done
                print(
                    f"{inert(name)}: {record.counts.nonconforming} answer(s) did not match "
                    f"responseFormat; see {inert(os.path.relpath(record.errors.path))}",
                    file=sys.stderr,
                )
        if self.json:
            print(json_text(self._result_json(result, code), indent=2))
        else:
            for line in canary_lines(result.plan, canary_only=getattr(args, "canary_only", False)):
                print(line)
            if result.plan.has_changes or not result.converged or _failures(result):
                print(_outcome_line(result, wait=args.wait, submitted=self.submitted), flush=True)
        if self.summary_file:
            append_step_summary(self.summary_file, _apply_markdown(result, code))
        return code

    def _result_json(self, result: PassResult, code: int) -> dict[str, Any]:
        """One document for the whole run: the plan as first made, every action executed (in
        every pass) with its outcome, and where each declared job ended up."""
        from batchops.render.plan import action_json, plan_json

        applied = [
            {
                **action_json(a),
                "pass": n,
                "outcome": _outcome(e),
                "error": None if e is None else str(e),
            }
            for n, a, e in self.outcomes
        ]
        return {
            "formatVersion": 1,
            "exitCode": code,
            "converged": result.converged,
            "passes": self.passes,
            "plan": plan_json(self.first_plan or result.plan, backend=self.backend_json),
            "applied": applied,
            "jobs": [{"name": n, "state": s} for n, s in result.plan.job_states],
            "errors": [str(e) for e in result.errors],
            "failedJobs": result.failed_jobs,
            "jobStates": result.job_states,
            "rowFailures": [
                {
                    "job": r.job,
                    "failed": r.failed,
                    "total": r.total,
                    "allowed": r.allowed,
                    "firstErrors": list(r.first_errors),
                    "failedRows": r.summary.to_json() if r.summary else None,
                }
                for r in result.row_failures
            ],
        }


_SUBMITS = frozenset({Kind.CREATE_JOB, Kind.REPLACE_JOB, Kind.RETRY_JOB, Kind.RESUME_JOB})


def _failures(result: PassResult) -> bool:
    return bool(result.failed_jobs or result.row_failures)


def _outcome_line(result: PassResult, *, wait: bool, submitted: int) -> str:
    """The last line: where things stand (a job with failed rows is not "complete"), what was
    submitted over every pass, and what to run next when things are still moving."""
    sent = f" ({submitted} job(s) submitted)" if submitted else ""
    if result.converged and result.failed_jobs:
        return f"Apply failed: {_failed_text(result)}; {_states_text(result)}{sent}."
    if result.converged and result.row_failures:
        return f"Apply complete with failed rows: {_failed_text(result)}{sent}."
    if result.converged:
        return f"Apply complete: {_states_text(result) or 'no jobs'}{sent}."
    running = sum(a.kind is Kind.WAIT for a in result.plan.actions)
    hint = "" if wait else " Follow them with `batchops status`, or wait with `apply --wait`."
    return f"Applied: {submitted} job(s) submitted, {running} in progress.{hint}"


def _first(errors: tuple[str, ...], width: int = 80) -> str:
    if not errors:
        return ""
    text = errors[0] if len(errors[0]) <= width else errors[0][: width - 1] + "…"
    return f" (first: {inert(text)})"  # a dataset's custom_id and a server's message


def _failed_text(result: PassResult) -> str:
    """'answers 2 of 12 rows failed (first: row-2: ...), other failed' over the declared jobs."""
    rows = {r.job: r for r in result.row_failures}
    parts = [
        f"{inert(r.job)} {r.failed} of {r.total} rows failed{_first(r.first_errors)}"
        for r in rows.values()
    ]
    parts += [f"{inert(name)} failed" for name in result.failed_jobs if name not in rows]
    return ", ".join(parts)


def _exit_code(result: PassResult) -> int:
    if result.errors:
        return EXIT_ERROR
    return EXIT_JOB_FAILED if result.failed_jobs else EXIT_OK


def _outcome(error: BatchopsError | None) -> str:
    if error is None:
        return "done"
    return "skipped" if isinstance(error, SkippedError) else "failed"


def _apply_markdown(result: PassResult, code: int) -> str:
    head = "converged" if result.converged else "in progress"
    failed = f"; failed: {md_text(', '.join(result.failed_jobs))}" if result.failed_jobs else ""
    text = f"#### batchops apply: {head}, exit {code}{failed}\n"
    failures = failures_markdown(result.plan, result.row_failures)
    canaries = canary_markdown(result.plan)
    return text + errors_markdown(str(e) for e in result.errors) + failures + canaries


def _loop(
    job: _Run,
    args: argparse.Namespace,
    provider: Any,
    reporter: NullReporter,
    stop: threading.Event,
    printer: _Printer,
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
    states = f" ({_states_text(result)})" if result is not None else ""
    return BatchopsError(f"--timeout {timeout:g} s reached before convergence{states}")


def _states_text(result: PassResult) -> str:
    """'2 completed, 1 running' over the declared jobs. Providers name their states their own
    way (Fireworks ``JOB_STATE_COMPLETED``, OpenAI ``completed``): one word is counted once."""
    counts: dict[str, int] = {}
    for state, n in result.job_states.items():
        word = state.removeprefix("JOB_STATE_").lower()
        counts[word] = counts.get(word, 0) + n
    return ", ".join(f"{n} {inert(word)}" for word, n in sorted(counts.items()))
