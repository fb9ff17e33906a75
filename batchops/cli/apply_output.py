"""What `apply` prints and writes: each pass's plan (the first whole; a later one's changes, and
its cost when it sends rows), the outcome line, the JSON document and the step summary, and the
exit code of a run (``batchops.cli.apply`` runs the passes)."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

from batchops.apply import NullReporter, SkippedError
from batchops.cli.backend import remote_title
from batchops.cli.common import append_step_summary
from batchops.cli.confirm import ApplyGate, NotConfirmedError, ask_terminal
from batchops.config import Settings
from batchops.errors import EXIT_ERROR, EXIT_JOB_FAILED, EXIT_OK, EXIT_REFUSED, BatchopsError
from batchops.money import CostReport
from batchops.plan import Action, Kind, Plan
from batchops.reconcile import PassResult
from batchops.render.canary import canary_lines, canary_markdown
from batchops.render.cost import cost_text_lines
from batchops.render.failures import failure_annotations, failure_lines, failures_markdown
from batchops.render.plan import (
    action_line,
    errors_markdown,
    plan_markdown,
    plan_text,
    summary_line,
)
from batchops.textsafe import inert, json_text, md_text


class Outcomes(NullReporter):
    """Passes every report on, and keeps (pass, action, error) for the JSON document."""

    def __init__(self, inner: NullReporter, printer: Printer) -> None:
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


class Printer:
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
        self.costs: list[tuple[int, CostReport]] = []  # passes that send rows: what they cost
        self.gate = ApplyGate(
            auto_approve=args.auto_approve, saved_plan=saved, show=self._show, ask=self._ask
        )

    def on_result(self, result: PassResult) -> None:
        done = result.applied.done if result.applied else []
        self.submitted += sum(a.kind in _SUBMITS for a in done)

    def log(self, reporter: NullReporter) -> Outcomes:
        return Outcomes(reporter, self)

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
        sends = plan.cost is not None and bool(plan.cost.actions)
        if plan.cost is not None and sends:
            self.costs.append((self.passes, plan.cost))
        if self.summary_file and (self.passes == 1 or sends):
            # A later pass that sends rows (a pipeline's next stage) shows its cost there too.
            title = "batchops apply" + (f", pass {self.passes}" if self.passes > 1 else "")
            markdown = plan_markdown(plan, title=title, backend=self.backend)
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
        if sends:  # nothing that costs money starts unseen, nor past a budget unmarked
            print("\n".join(cost_text_lines(plan.cost)), flush=True)
        line = summary_line(plan)
        if line != self.last_line:
            print(line, flush=True)
            self.last_line = line

    def refused(self) -> None:
        if self.summary_file:
            after = f" (after {self.passes - 1} pass(es) that ran)" if self.passes > 1 else ""
            append_step_summary(
                self.summary_file,
                f"#### batchops apply: refused by a budget, exit {EXIT_REFUSED}{after}; "
                "nothing of this pass was sent\n",
            )

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
        from batchops.render.cost import cost_json
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
            "costs": [{"pass": n, **(cost_json(c) or {})} for n, c in self.costs],
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
        return f"Apply failed: {_failed_text(result)}; {states_text(result)}{sent}."
    if result.converged and result.row_failures:
        return f"Apply complete with failed rows: {_failed_text(result)}{sent}."
    if result.converged:
        return f"Apply complete: {states_text(result) or 'no jobs'}{sent}."
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


def states_text(result: PassResult) -> str:
    """'2 completed, 1 running' over the declared jobs. Providers name their states their own
    way (Fireworks ``JOB_STATE_COMPLETED``, OpenAI ``completed``): one word is counted once."""
    counts: dict[str, int] = {}
    for state, n in result.job_states.items():
        word = state.removeprefix("JOB_STATE_").lower()
        counts[word] = counts.get(word, 0) + n
    return ", ".join(f"{n} {inert(word)}" for word, n in sorted(counts.items()))
