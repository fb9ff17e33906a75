"""How `apply` and `delete` report each finished action: a line each (``LineReporter``), with
progress bars for uploads and downloads on a terminal (``RichReporter``)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from batchops.apply import NullReporter
from batchops.errors import BatchopsError
from batchops.plan import Action
from batchops.render.plan import SYMBOLS
from batchops.textsafe import inert


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


@contextmanager
def reporter_for(*, json_output: bool) -> Iterator[NullReporter]:
    if sys.stdout.isatty() and not json_output:
        with RichReporter() as rich_reporter:
            yield rich_reporter
    else:
        yield LineReporter(to_stderr=json_output)
