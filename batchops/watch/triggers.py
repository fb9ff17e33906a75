"""The trigger queue: "run a pass now" requests from file events, SIGHUP and git pulls.

Producers (the file watcher thread, the git poller thread, the CLI's signal handler) call
``fire(reason)``; the daemon loop (``batchops.watch.loop``) calls ``wait``. Reasons that arrive
while a pass runs pile up in one set, so any number of them becomes exactly one more pass.
"""

from __future__ import annotations

import threading


class Triggers:
    """A thread-safe, coalescing set of pending reasons, woken early by ``stop``."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._lock = threading.Lock()
        self._reasons: set[str] = set()
        self._wake = threading.Event()

    def fire(self, reason: str) -> None:
        with self._lock:
            self._reasons.add(reason)
            self._wake.set()

    def shutdown(self) -> None:
        """Set the stop event and wake a waiting loop (what SIGTERM does)."""
        self._stop.set()
        self._wake.set()

    def wait(self, timeout: float | None, *, wake_on_trigger: bool = True) -> frozenset[str]:
        """Block until a trigger (if ``wake_on_trigger``), stop, or ``timeout``; drain the reasons.

        With ``wake_on_trigger=False`` (API back-off) triggers only accumulate, and the wait is a
        plain ``stop.wait``: the back-off is honoured, yet shutdown stays immediate.
        """
        if self._stop.is_set():
            return self._drain()
        if wake_on_trigger:
            self._wake.wait(timeout)
        else:
            self._stop.wait(timeout)
        return self._drain()

    def _drain(self) -> frozenset[str]:
        with self._lock:
            reasons = frozenset(self._reasons)
            self._reasons.clear()
            self._wake.clear()
            return reasons
