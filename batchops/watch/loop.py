"""The daemon loop: one full reconcile pass per wake-up, forever, until the stop event is set.

``batchops.watch.service`` builds a ``Daemon`` around ``reconcile.run_pass``; tests build one
around a fake pass and a scripted trigger source. The loop never decides what to do from *what*
changed (DESIGN.md section 1): every wake-up runs the same pass, and only the pass's outcome
decides how long to sleep before the next one:

- ok and converged: the resync interval, with jitter so that many daemons do not beat together;
- ok with jobs in progress: the shorter busy interval, so results arrive promptly;
- invalid input: no timer at all; the next edit (or git pull) wakes us;
- API trouble: exponential back-off, capped, honouring Retry-After; triggers only accumulate;
- any other exception: logged with its traceback, then the same back-off, but an edit wakes us.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from batchops.errors import ApiError, BatchopsError, BudgetError, InvalidInputError

log = logging.getLogger("batchops.watch")


class Outcome(enum.StrEnum):
    OK = "ok"
    INVALID = "invalid"
    API_ERROR = "api_error"
    ERROR = "error"
    REFUSED = "refused"  # over a budget: nothing sent; tried again on the next change


class PassResultLike(Protocol):
    """What the loop reads of ``reconcile.PassResult`` (a Protocol so tests can fake a pass)."""

    @property
    def errors(self) -> Sequence[BatchopsError]: ...
    @property
    def converged(self) -> bool: ...
    @property
    def failed_jobs(self) -> Sequence[str]: ...
    @property
    def job_states(self) -> Mapping[str, int]: ...


class TriggerSource(Protocol):
    def wait(self, timeout: float | None, *, wake_on_trigger: bool = True) -> frozenset[str]: ...


@dataclass(frozen=True)
class Timing:
    interval: float = 30.0  # resync when idle
    busy_interval: float = 2.0  # resync while jobs are in progress
    jitter: float = 0.1  # +-10% on the resync interval
    backoff_base: float = 1.0
    backoff_cap: float = 60.0


@dataclass(frozen=True)
class PassRecord:
    """What one pass did; handed to ``on_pass`` (metrics, readiness) after it is logged."""

    outcome: Outcome
    duration: float
    reasons: frozenset[str]
    finished_at: float  # wall clock (time.time), for "last successful pass"
    result: PassResultLike | None = None
    error: BaseException | None = None


class Daemon:
    def __init__(
        self,
        *,
        run_pass: Callable[[], PassResultLike],
        triggers: TriggerSource,
        stop: threading.Event,
        timing: Timing = Timing(),
        rng: random.Random | None = None,
        on_pass: Callable[[PassRecord], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run_pass = run_pass
        self._triggers = triggers
        self._stop = stop
        self._timing = timing
        self._rng = rng or random.Random()
        self._on_pass = on_pass
        self._clock = clock
        self._failures = 0  # consecutive passes that ended in API trouble or a bug

    def run(self) -> None:
        """Run passes until ``stop`` is set; returns promptly once it is."""
        reasons = frozenset({"start"})
        while not self._stop.is_set():
            record = self._one_pass(reasons)
            if self._on_pass is not None:
                self._on_pass(record)
            if self._stop.is_set():
                break
            timeout, wake = self._next_wait(record)
            reasons = self._triggers.wait(timeout, wake_on_trigger=wake) or frozenset({"resync"})
        log.info("stopped", extra={"event": "stopped"})

    def _one_pass(self, reasons: frozenset[str]) -> PassRecord:
        started = self._clock()
        result: PassResultLike | None = None
        error: BaseException | None = None
        try:
            result = self._run_pass()
            outcome = _outcome_of(result)
        except InvalidInputError as exc:
            outcome, error = Outcome.INVALID, exc
        except BudgetError as exc:
            outcome, error = Outcome.REFUSED, exc
        except ApiError as exc:
            outcome, error = Outcome.API_ERROR, exc
        except Exception as exc:  # noqa: BLE001 - a bug in one pass must not end the daemon
            outcome, error = Outcome.ERROR, exc
        record = PassRecord(outcome, self._clock() - started, reasons, time.time(), result, error)
        self._failures = self._failures + 1 if outcome in _FAILURES else 0
        _log_pass(record)
        return record

    def _next_wait(self, record: PassRecord) -> tuple[float | None, bool]:
        """(timeout, wake_on_trigger) for the sleep after ``record``."""
        if record.outcome in (Outcome.INVALID, Outcome.REFUSED):
            return None, True
        if record.outcome in _FAILURES:
            delay = self._backoff(record)
            log.info("retrying in %.1fs", delay, extra={"event": "backoff", "delay": delay})
            return delay, record.outcome is not Outcome.API_ERROR
        if record.result is not None and getattr(record.result, "unblocked", False):
            return 0.0, True  # a stage's upstream results were just verified: start it now
        if record.result is not None and not record.result.converged:
            return min(self._timing.interval, self._timing.busy_interval), True
        spread = self._timing.jitter * self._rng.uniform(-1.0, 1.0)
        return self._timing.interval * (1.0 + spread), True

    def _backoff(self, record: PassRecord) -> float:
        t = self._timing
        delay = min(t.backoff_cap, t.backoff_base * 2.0 ** (self._failures - 1))
        retry_after = max((e.retry_after or 0.0 for e in _api_errors(record)), default=0.0)
        return min(t.backoff_cap, max(delay, retry_after))


_FAILURES = frozenset({Outcome.API_ERROR, Outcome.ERROR})


def _outcome_of(result: PassResultLike) -> Outcome:
    """A pass that returned may still carry per-action errors (one upload failed, say)."""
    if any(isinstance(e, ApiError) for e in result.errors):
        return Outcome.API_ERROR
    return Outcome.ERROR if result.errors else Outcome.OK


def _api_errors(record: PassRecord) -> list[ApiError]:
    errors: list[BaseException] = list(record.result.errors) if record.result else []
    errors += [record.error] if record.error is not None else []
    return [e for e in errors if isinstance(e, ApiError)]


def _log_pass(record: PassRecord) -> None:
    """One line per pass; diagnostics and errors get their own lines just before it."""
    extra = _pass_fields(record)
    if isinstance(record.error, InvalidInputError):
        for diagnostic in record.error.diagnostics:
            log.warning("%s", diagnostic, extra={"event": "diagnostic"})
    elif record.outcome is Outcome.ERROR and record.error is not None:
        log.error("pass failed: %r", record.error, exc_info=record.error, extra=extra)
    for error in record.result.errors if record.result else ():
        log.warning("%s", error, extra={"event": "action_error"})
    summary = extra["jobs_summary"] or "no jobs"
    detail = f": {record.error}" if record.error is not None else ""
    level = logging.INFO if record.outcome is Outcome.OK else logging.WARNING
    log.log(
        level,
        "pass %s in %.2fs (%s) %s%s",
        record.outcome,
        record.duration,
        ",".join(sorted(record.reasons)),
        summary,
        detail,
        extra=extra,
    )


def _pass_fields(record: PassRecord) -> dict[str, object]:
    states = dict(record.result.job_states) if record.result else {}
    return {
        "event": "pass",
        "outcome": str(record.outcome),
        "duration": round(record.duration, 4),
        "reasons": sorted(record.reasons),
        "job_states": states,
        "jobs_summary": ", ".join(
            f"{n} {s.removeprefix('JOB_STATE_').lower()}" for s, n in sorted(states.items())
        ),
        "failed_jobs": list(record.result.failed_jobs) if record.result else [],
    }
