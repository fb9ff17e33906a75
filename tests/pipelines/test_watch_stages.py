"""watch starts a downstream stage as soon as its upstream's results are verified: the pass that
merged them is followed by another at once, not at the next resync tick (issue 16)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import FireworksProvider
from batchops.reconcile import PassOptions, PassResult, run_pass
from batchops.watch.loop import Daemon, PassRecord, Timing
from tests.conftest import FakeResult
from tests.pipelines.test_chain_e2e import PROJECT, client, write_repo

__all__ = ["client"]


class Recorder:
    """Records each wait's timeout; sleeps only briefly (the test never waits for a tick)."""

    def __init__(self, stop: threading.Event, done: threading.Event) -> None:
        self.stop, self.done = stop, done
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None, *, wake_on_trigger: bool = True) -> frozenset[str]:
        self.waits.append(timeout)
        if self.done.is_set() or len(self.waits) > 400:
            self.stop.set()
        else:
            threading.Event().wait(0.02)
        return frozenset()


def test_the_loop_runs_again_at_once_after_an_unblocking_pass() -> None:
    stop = threading.Event()
    recorder = Recorder(stop, threading.Event())
    steps = [FakeResult(converged=False, unblocked=True), FakeResult(converged=False)]

    def one() -> FakeResult:
        if len(steps) == 1:
            stop.set()
        return steps.pop(0)

    Daemon(
        run_pass=one,
        triggers=recorder,
        stop=stop,
        rng=random.Random(1),
        timing=Timing(interval=30, busy_interval=2),
    ).run()
    assert recorder.waits[0] == 0.0


def test_watch_creates_the_downstream_job_in_the_pass_after_the_merge(
    tmp_path: Path,
    client: FireworksClient,
) -> None:
    paths = write_repo(tmp_path, {"a": "one", "b": "two"})
    stop, done = threading.Event(), threading.Event()
    recorder = Recorder(stop, done)
    records: list[PassRecord] = []
    provider = FireworksProvider(client)

    def one() -> PassResult:
        result = run_pass(
            paths, root=tmp_path, provider=provider, project=PROJECT, options=PassOptions()
        )
        if any(j.name.rsplit("/", 1)[-1].startswith("judge") for j in client.list_jobs()):
            done.set()
        return result

    Daemon(
        run_pass=one,
        triggers=recorder,
        stop=stop,
        on_pass=records.append,
        timing=Timing(interval=3600, busy_interval=3600),
    ).run()
    assert done.is_set()
    merged = next(i for i, r in enumerate(records) if getattr(r.result, "unblocked", False))
    assert recorder.waits[merged] == 0.0  # no tick: the next pass came at once
    assert records[merged + 1].result is not None
    created = [
        a.resource.name
        for a in records[merged + 1].result.plan.actions  # type: ignore[attr-defined]
        if a.kind.value == "create-job"
    ]
    assert created and all(n.startswith("judge") for n in created)
