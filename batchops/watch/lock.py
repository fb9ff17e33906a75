"""One daemon per project folder: an exclusive lock on ``<root>/.batchops/watch.lock``.

``batchops.cli.watch`` holds a ``ProjectLock`` for the daemon's lifetime. Where ``fcntl`` exists
(Linux, macOS) it is an ``flock``; on Windows a ``msvcrt.locking`` byte lock. Both are dropped by
the OS when the process dies, however it dies, so a stale file never blocks a restart. Where
neither module exists, a lock file created with ``O_EXCL`` holds the owner's PID, and a file whose
PID is no longer alive is taken over. The modules are imported when a lock is taken, never at
import time, so every other command runs where ``fcntl`` does not exist. The file holds the
owner's PID so that a second daemon can say who is running.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path
from types import ModuleType, TracebackType

from batchops.config import STATE_DIR, ensure_state_dir
from batchops.errors import AlreadyRunningError


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class ProjectLock:
    def __init__(self, root: Path) -> None:
        self.path = root / STATE_DIR / "watch.lock"
        self._fd: int | None = None
        self._kind = ""  # "fcntl" | "msvcrt" | "file"

    def acquire(self) -> None:
        ensure_state_dir(self.path.parent.parent)  # 0700, ignoring itself
        fcntl, msvcrt = _module("fcntl"), _module("msvcrt")
        if fcntl is None and msvcrt is None:
            self._fd, self._kind = self._exclusive_file(), "file"
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)  # one an older version made 0644
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                assert msvcrt is not None
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:  # BlockingIOError (flock), PermissionError (msvcrt)
            owner = ""
            with contextlib.suppress(OSError):  # Windows refuses to read a locked byte
                owner = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise self._held(owner) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd, self._kind = fd, "fcntl" if fcntl is not None else "msvcrt"

    def _exclusive_file(self) -> int:
        """The fallback: create the file or fail; a file left by a dead process is removed."""
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                owner = self._owner()
                if owner is None or _alive(owner):
                    raise self._held(str(owner or "")) from None
                self.path.unlink(missing_ok=True)  # its owner died without releasing it
                continue
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        raise self._held("")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text(encoding="utf-8").strip() or "0") or None
        except (OSError, ValueError):
            return None

    def _held(self, owner: str) -> AlreadyRunningError:
        return AlreadyRunningError(
            f"another batchops watch (PID {owner or 'unknown'}) is already running for "
            f"{self.path.parent.parent}; lock file {self.path}"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        if self._kind == "fcntl":
            fcntl = importlib.import_module("fcntl")
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        elif self._kind == "msvcrt":
            msvcrt = importlib.import_module("msvcrt")
            os.lseek(self._fd, 0, os.SEEK_SET)
            with contextlib.suppress(OSError):
                msvcrt.locking(self._fd, msvcrt.LK_UNLCK, 1)
        os.close(self._fd)
        if self._kind == "file":
            self.path.unlink(missing_ok=True)
        self._fd = None

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs. Only asked where neither fcntl nor msvcrt exists (not Windows,
    where signal 0 would be CTRL_C_EVENT); unknown means alive."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
