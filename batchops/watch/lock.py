"""One daemon per project folder: an exclusive ``flock`` on ``<root>/.batchops/watch.lock``.

``batchops.cli.watch`` holds a ``ProjectLock`` for the daemon's lifetime. The kernel drops the
lock when the process dies, however it dies, so a stale file never blocks a restart; the file
holds the owner's PID only so that a second daemon can say who is running.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from batchops.config import STATE_DIR, ensure_state_dir
from batchops.errors import AlreadyRunningError


class ProjectLock:
    def __init__(self, root: Path) -> None:
        self.path = root / STATE_DIR / "watch.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_state_dir(self.path.parent.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunningError(
                f"another batchops watch (PID {owner}) is already running for "
                f"{self.path.parent.parent}; lock file {self.path}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
