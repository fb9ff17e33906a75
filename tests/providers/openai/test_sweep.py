"""A pass observes jobs and inputs side by side; on an OpenAI-compatible provider both come from
one sweep of the batches list, never two, and a sweep never answers a caller that asks after a
write the sweep may have missed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchops.local.server import EmbeddedServer
from batchops.providers.openai import ownership as own
from batchops.providers.openai.provider import OpenAIProvider
from batchops.providers.openai.sweep import SharedSweep
from batchops.providers.registry import ProviderConfig, build

pytestmark = pytest.mark.timeout(60)

HOLD = 2.0  # seconds the first listing waits for a second one (the old code's second sweep)


class HoldFirstListing(httpx.BaseTransport):
    """Loopback HTTP that holds the first ``GET /batches`` until another one arrives (or HOLD
    seconds pass), so that a second observer asks while the first sweep runs."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self._lock = threading.Lock()
        self.arrived = threading.Event()
        self._second = threading.Event()
        self.listings = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/batches"):
            with self._lock:
                self.listings += 1
                first = self.listings == 1
            if first:
                self.arrived.set()
                self._second.wait(HOLD)
            else:
                self._second.set()
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class Held:
    """A provider on the local backend, one batch of job ``k-1`` on it, through the transport."""

    def __init__(self, server: EmbeddedServer, folder: Path) -> None:
        self.transport = HoldFirstListing()
        config = ProviderConfig("oai", "openai", base_url=f"{server.base_url}/v1")
        provider = build(config, api_key=None, transport=self.transport, scratch=folder)
        assert isinstance(provider, OpenAIProvider)
        self.provider = provider
        path = folder / "in.jsonl"
        path.write_text('{"custom_id": "r0", "method": "POST", "url": "/v1/chat/completions"}\n')
        self.file_id = provider.client.upload_file(path).id
        self.submit("k-1")

    def submit(self, key: str) -> None:
        slot = own.Slot(key, 0, 1, 0)
        meta = own.metadata(
            "p", "job", slot, tokens=1, rows=1, input_key="ds", model="m", continued_from=None
        )
        self.provider.client.create_batch(
            input_file_id=self.file_id, endpoint="/v1/chat/completions", metadata=meta
        )

    def jobs_in_thread(self) -> tuple[threading.Thread, list[Any]]:
        """``list_jobs`` on another thread, once its sweep is held at its first page."""
        out: list[Any] = []
        thread = threading.Thread(target=lambda: out.extend(self.provider.list_jobs()))
        thread.start()
        assert self.transport.arrived.wait(10)
        return thread, out


@pytest.fixture
def held(make_server: Callable[..., EmbeddedServer], tmp_path: Path) -> Iterator[Held]:
    made = Held(make_server(worker=False), tmp_path)
    yield made
    made.provider.close()


def test_jobs_and_inputs_asked_at_once_share_one_sweep(held: Held) -> None:
    thread, jobs = held.jobs_in_thread()
    inputs = held.provider.list_inputs()  # while the jobs' sweep runs
    thread.join()
    assert [job.key for job in jobs] == ["k-1"] and [i.key for i in inputs] == ["ds"]
    assert held.transport.listings == 1


def test_a_caller_after_a_write_does_not_take_a_sweep_begun_before_it(held: Held) -> None:
    thread, before = held.jobs_in_thread()
    held.submit("k-2")  # ends before the next caller asks: it must see the new batch
    after = held.provider.list_jobs()
    thread.join()
    assert [job.key for job in after] == ["k-1", "k-2"]
    assert [job.key for job in before] in (["k-1"], ["k-1", "k-2"])
    assert held.transport.listings == 2


class Gate:
    """A sweep that waits to be let go, and write marks a test sets; the marks call signals that
    a second caller has arrived (it reads them under the lock, just before choosing)."""

    def __init__(self) -> None:
        self.entered, self.release, self.asked = (threading.Event() for _ in range(3))
        self.marks = (0, 0)
        self.sweeps = 0
        self._calls = 0

    def sweep(self) -> list[int]:
        self.sweeps += 1
        number = self.sweeps
        self.entered.set()
        assert self.release.wait(10)
        return [number]

    def write_marks(self) -> tuple[int, int]:
        self._calls += 1
        if self._calls > 1:
            self.asked.set()
            self.release.set()  # the first sweep may end now: the second caller has chosen
        return self.marks


def _second_caller(gate: Gate, marks: tuple[int, int]) -> list[int]:
    """Run a first caller, change the marks, then a second caller while the first sweeps."""
    shared = SharedSweep(gate.sweep, gate.write_marks)
    first: list[list[int]] = []
    thread = threading.Thread(target=lambda: first.append(shared.run()))
    thread.start()
    assert gate.entered.wait(10)
    gate.marks = marks
    second = shared.run()
    thread.join()
    assert first == [[1]]
    return second


def test_a_second_caller_takes_the_running_sweep() -> None:
    gate = Gate()
    assert _second_caller(gate, (0, 0)) == [1] and gate.sweeps == 1


@pytest.mark.parametrize(
    "marks",
    [(1, 0), (1, 1)],
    ids=["a write started since the sweep began", "a write started and ended since"],
)
def test_a_second_caller_sweeps_again_after_a_write(marks: tuple[int, int]) -> None:
    gate = Gate()
    assert _second_caller(gate, marks) == [2] and gate.sweeps == 2


def test_a_sweep_begun_while_a_write_was_in_flight_is_not_shared() -> None:
    gate = Gate()
    gate.marks = (1, 0)  # the write may land after the sweep read its page
    assert _second_caller(gate, (1, 0)) == [2] and gate.sweeps == 2


def test_a_failed_sweep_is_not_shared() -> None:
    calls: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def sweep() -> list[int]:
        calls.append(1)
        if len(calls) == 1:
            entered.set()
            assert release.wait(10)
            raise OSError("the connection dropped")
        return [len(calls)]

    def marks() -> tuple[int, int]:
        if entered.is_set():
            release.set()
        return (0, 0)

    shared = SharedSweep(sweep, marks)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            shared.run()
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(10)
    assert shared.run() == [2]
    thread.join()
    assert len(errors) == 1
