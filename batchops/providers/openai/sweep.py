"""One sweep of the batches list shared by the observers that ask for it at the same time.

A pass observes jobs and inputs side by side (``reconcile.observe_all``), and on this provider
both are read from the same list of batches: without sharing, a pass would page through every
batch twice. A caller that arrives while a sweep runs takes that sweep's answer instead of
starting another, but only when the answer cannot miss a write it has seen: no write of this
client was in flight when the sweep began and none has started since (``write_marks``), so
every write that ended before the caller asked had ended before the sweep began. Used by
``provider``; a failed sweep is not shared (each caller then sweeps on its own).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Sweep(Generic[T]):
    def __init__(self, marks: tuple[int, int]) -> None:
        self.marks = marks
        self.done = threading.Event()
        self.result: T | None = None


class SharedSweep(Generic[T]):
    """``run`` calls ``sweep``, or waits for the one running when it may stand for a new one."""

    def __init__(self, sweep: Callable[[], T], write_marks: Callable[[], tuple[int, int]]) -> None:
        self._sweep = sweep
        self._write_marks = write_marks
        self._lock = threading.Lock()
        self._running: _Sweep[T] | None = None

    def run(self) -> T:
        sweep, joined = self._join_or_start()
        if joined:
            sweep.done.wait()
            return self._sweep() if sweep.result is None else sweep.result
        try:
            sweep.result = self._sweep()
            return sweep.result
        finally:
            sweep.done.set()
            with self._lock:
                if self._running is sweep:
                    self._running = None

    def _join_or_start(self) -> tuple[_Sweep[T], bool]:
        """The running sweep to wait for (True), or a new one this caller runs (False)."""
        with self._lock:
            marks, running = self._write_marks(), self._running
            if running is not None and running.marks == marks and marks[0] == marks[1]:
                return running, True
            self._running = _Sweep(marks)
            return self._running, False
