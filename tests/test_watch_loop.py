"""The daemon loop with a fake pass and scripted triggers: no threads, no real sleeping."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

import pytest

from batchops.errors import (
    Diagnostic,
    InvalidInputError,
    RateLimitedError,
    ServerError,
)
from batchops.watch.loop import Daemon, Outcome, PassRecord, Timing
from batchops.watch.triggers import Triggers
from tests.conftest import FakeResult

Step = Callable[[], FakeResult]


class ScriptedTriggers:
    """Answers each wait with the next scripted set of reasons; stops the daemon at the end."""

    def __init__(self, stop: threading.Event, script: list[frozenset[str]]) -> None:
        self.stop, self.script = stop, list(script)
        self.waits: list[tuple[float | None, bool]] = []

    def wait(self, timeout: float | None, *, wake_on_trigger: bool = True) -> frozenset[str]:
        self.waits.append((timeout, wake_on_trigger))
        if not self.script:
            self.stop.set()
            return frozenset()
        return self.script.pop(0)


def ok(**kw: object) -> Step:
    return lambda: FakeResult(**kw)  # type: ignore[arg-type]


def raises(exc: Exception) -> Step:
    def step() -> FakeResult:
        raise exc

    return step


def run_daemon(
    steps: list[Step], script: list[frozenset[str]], timing: Timing | None = None
) -> tuple[list[PassRecord], ScriptedTriggers]:
    stop = threading.Event()
    triggers = ScriptedTriggers(stop, script)
    records: list[PassRecord] = []
    pending = list(steps)
    daemon = Daemon(
        run_pass=lambda: pending.pop(0)(),
        triggers=triggers,
        stop=stop,
        timing=timing or Timing(),
        rng=random.Random(7),
        on_pass=records.append,
    )
    daemon.run()
    return records, triggers


TICK = frozenset[str]()
EDIT = frozenset({"file"})


def test_first_pass_runs_at_start_then_resync_ticks_with_jitter() -> None:
    records, triggers = run_daemon([ok(), ok(), ok()], [TICK, TICK])
    assert [r.reasons for r in records] == [{"start"}, {"resync"}, {"resync"}]
    timeouts = [t for t, _ in triggers.waits]
    assert all(t is not None and 27.0 <= t <= 33.0 for t in timeouts)
    assert len(set(timeouts)) == len(timeouts)  # jittered, not a fixed beat


def test_triggers_that_arrive_during_a_pass_coalesce_into_one_more_pass() -> None:
    stop = threading.Event()
    triggers = Triggers(stop)
    passes: list[frozenset[str]] = []

    def run_pass() -> FakeResult:
        if len(passes) == 0:  # three edits and a SIGHUP land while the first pass runs
            for reason in ("file", "file", "sighup", "file"):
                triggers.fire(reason)
        elif len(passes) == 1:
            triggers.shutdown()
        passes.append(frozenset())
        return FakeResult()

    records: list[PassRecord] = []
    Daemon(run_pass=run_pass, triggers=triggers, stop=stop, on_pass=records.append).run()
    assert [r.reasons for r in records] == [{"start"}, {"file", "sighup"}]


def test_jobs_in_progress_use_the_busy_interval() -> None:
    _, triggers = run_daemon(
        [ok(converged=False), ok()], [TICK], Timing(interval=30.0, busy_interval=2.0)
    )
    assert triggers.waits[0] == (2.0, True)
    assert triggers.waits[1][0] is not None and triggers.waits[1][0] > 20


def test_api_errors_back_off_exponentially_capped_and_reset_after_success() -> None:
    down = raises(ServerError("unavailable", status=503))
    steps = [down, down, down, down, ok(), down]
    records, triggers = run_daemon(steps, [TICK] * 5, Timing(backoff_base=1.0, backoff_cap=5.0))
    assert [r.outcome for r in records] == [Outcome.API_ERROR] * 4 + [Outcome.OK, Outcome.API_ERROR]
    delays = [t for t, _ in triggers.waits]
    assert delays[:4] == [1.0, 2.0, 4.0, 5.0]
    assert delays[5] == 1.0  # the streak was reset by the successful pass
    # during API back-off an edit does not cut the wait short (it coalesces instead)
    assert [w for _, w in triggers.waits[:4]] == [False] * 4


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    limited = raises(RateLimitedError("slow down", status=429, retry_after=7.0))
    _, triggers = run_daemon([limited], [], Timing(backoff_base=1.0, backoff_cap=60.0))
    assert triggers.waits[0] == (7.0, False)


def test_per_action_api_errors_in_a_result_also_back_off() -> None:
    records, triggers = run_daemon([ok(errors=[ServerError("boom", status=500)])], [])
    assert records[0].outcome is Outcome.API_ERROR
    assert triggers.waits[0] == (1.0, False)


def test_invalid_input_waits_for_the_next_edit_without_a_timer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = InvalidInputError([Diagnostic("jobs/a.yaml", 3, 5, "unknown field 'modle'")])
    caplog.set_level(logging.INFO, logger="batchops.watch")
    records, triggers = run_daemon([raises(bad), ok()], [EDIT])
    assert triggers.waits[0] == (None, True)
    assert [r.outcome for r in records] == [Outcome.INVALID, Outcome.OK]
    assert records[1].reasons == {"file"}
    assert "jobs/a.yaml:3:5: unknown field 'modle'" in caplog.messages


def test_a_bug_in_one_pass_is_logged_with_its_traceback_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records, triggers = run_daemon([raises(KeyError("oops")), ok()], [TICK])
    assert [r.outcome for r in records] == [Outcome.ERROR, Outcome.OK]
    assert triggers.waits[0] == (1.0, True)  # backs off, but an edit may wake it
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert tracebacks and "KeyError" in caplog.text


def test_stop_during_a_pass_ends_the_loop_without_another_wait() -> None:
    stop = threading.Event()
    triggers = ScriptedTriggers(stop, [EDIT])

    def run_pass() -> FakeResult:
        stop.set()
        return FakeResult()

    Daemon(run_pass=run_pass, triggers=triggers, stop=stop).run()
    assert triggers.waits == []


def test_real_triggers_wake_on_fire_and_on_shutdown() -> None:
    stop = threading.Event()
    triggers = Triggers(stop)
    triggers.fire("file")
    assert triggers.wait(60.0) == {"file"}
    assert triggers.wait(0.001) == frozenset()  # drained
    threading.Timer(0.01, triggers.shutdown).start()
    assert triggers.wait(60.0, wake_on_trigger=False) == frozenset()
    assert stop.is_set()
