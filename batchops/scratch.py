"""Scratch folders under ``.batchops/tmp/`` that the next run cleans up if this one is killed.

``batchops.results`` (and through it ``batchops.apply``) does every download, merge index and
temp file of one results write in one ``Scratch``: ``.batchops/tmp/<id>/``, with an exclusive
``flock`` held on ``.batchops/tmp/<id>.lock`` for as long as it is in use. The kernel drops the lock
when the process dies, however it dies, so any later ``Scratch`` (of this or another process) can
tell a dead run's leftovers from a live run's files: it takes the lock without waiting, and only
then deletes. A temp file that must sit beside a results file (``.batchops/`` on another
filesystem) is named ``.<name>.<id>.batchops-tmp``, so it is recognised and swept the same way.

The lock file is created under a temporary name and renamed to ``<id>.lock`` only once locked, so a
sweeper never sees a lock file that is not yet held; a temporary name left by a run killed in
between is swept once its process is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path
from types import ModuleType, TracebackType

from batchops.config import STATE_DIR, ensure_state_dir
from batchops.private import private_dir

LOCK_SUFFIX = ".lock"
BESIDE_SUFFIX = ".batchops-tmp"
_PREFIX = "run-"
NAME_KEEP = 100  # bytes of a results file's name kept in the temp names made for it
_STAGING_SUFFIX = ".new"  # a lock file's name until it is locked (``_locked_file``)
_LEGACY_SUFFIXES = (".tmp", ".merge.db")
LEGACY_AGE = 3600.0  # seconds


def tmp_root(root: Path) -> Path:
    return root / STATE_DIR / "tmp"


class Scratch:
    """One run's private folder; ``with Scratch(root) as s:`` sweeps dead runs' folders first."""

    def __init__(self, root: Path) -> None:
        self.id = f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.root = root
        self.base = tmp_root(root)
        self.path = self.base / self.id
        self._fd: int | None = None

    def __enter__(self) -> Scratch:
        ensure_state_dir(self.root)  # .batchops/ ignores itself
        private_dir(self.base, root=self.root)  # 0700: results may be private
        sweep(self.base)
        self._fd = _locked_file(self.base, self.id)
        try:
            self.path.mkdir()
        except OSError:
            self.__exit__(None, None, None)  # disk full or read-only: leave no lock file behind
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        (self.base / f"{self.id}{LOCK_SUFFIX}").unlink(missing_ok=True)  # unlinked while held
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def beside(self, target: Path) -> Path:
        """A temp name in ``target``'s folder that ``sweep_beside`` recognises as this run's."""
        return target.with_name(f"{_beside_prefix(target)}{self.id}{BESIDE_SUFFIX}")


def _locked_file(base: Path, name: str) -> int:
    fcntl = _fcntl()
    staging = base / f".{name}{_STAGING_SUFFIX}"
    fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a brand-new file nobody else can hold: never waits
    staging.rename(base / f"{name}{LOCK_SUFFIX}")
    return fd


def _fcntl() -> ModuleType | None:
    """``fcntl`` where it exists (not on Windows: there nothing is swept, nothing breaks)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    return fcntl


def _is_dead(lock: Path) -> bool:
    """Whether no live process holds ``lock``; True leaves it held by us until the fd closes."""
    fcntl = _fcntl()
    if fcntl is None:  # pragma: no cover - Windows
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False  # gone: its owner finished, or another sweeper took it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: a live run
    finally:
        os.close(fd)
    return True


def sweep_all(root: Path) -> None:
    """What a killed run left under ``.batchops/``: called at the start of every apply."""
    sweep(tmp_root(root))
    sweep_old(root / STATE_DIR / "downloads")


def sweep(base: Path) -> list[str]:
    """Delete the folders of dead runs (their lock is free) and stray entries from before
    scratch folders; return the ids swept. Live runs' folders are never touched."""
    swept = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            name = entry.name
            if name.startswith(_PREFIX) and name.endswith(LOCK_SUFFIX):
                run = name.removesuffix(LOCK_SUFFIX)
                if _is_dead(base / name):
                    shutil.rmtree(base / run, ignore_errors=True)
                    (base / name).unlink(missing_ok=True)
                    swept.append(run)
            elif name.startswith(f".{_PREFIX}") and name.endswith(_STAGING_SUFFIX):
                if _staging_left(base / name):
                    (base / name).unlink(missing_ok=True)
            elif name.startswith(_PREFIX) and entry.is_dir(follow_symlinks=False):
                # No lock file: a run locks its lock file before making its folder and removes
                # the folder before the lock, so this run is over (killed between the two).
                if not (base / f"{name}{LOCK_SUFFIX}").exists():
                    shutil.rmtree(base / name, ignore_errors=True)
            elif _legacy(entry):
                _remove(Path(entry.path))
    return swept


def _staging_left(path: Path) -> bool:
    """Whether a lock file's staging name (``.run-<pid>-<hex>.new``) was left by a run killed
    between creating it and renaming it (``_locked_file``): its process is gone, or it is older
    than any run could take for that. A live run is in that window for microseconds, with its
    process alive, so its file is never taken for a dead one's."""
    if _fcntl() is None:  # pragma: no cover - Windows: nothing is swept
        return False
    pid = path.name.removeprefix(f".{_PREFIX}").split("-", 1)[0]
    try:
        if pid.isdigit():
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        gone = not pid.isdigit()
    except ProcessLookupError:
        gone = True
    except OSError:  # it exists (another user's) or cannot be asked
        gone = False
    with contextlib.suppress(OSError):
        gone = gone or time.time() - path.stat().st_mtime > LEGACY_AGE
    return gone and _is_dead(path)


def _legacy(entry: os.DirEntry[str]) -> bool:
    """A temp entry of a version before scratch folders (no lock to ask), old enough that no
    run of that version can still be writing it."""
    if not entry.name.endswith(_LEGACY_SUFFIXES):
        return False
    with contextlib.suppress(OSError):
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > LEGACY_AGE
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep_old(folder: Path) -> None:
    """Delete entries of ``folder`` older than ``LEGACY_AGE`` (``.batchops/downloads/`` of
    versions before scratch folders: nothing writes there any more)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                if time.time() - entry.stat(follow_symlinks=False).st_mtime > LEGACY_AGE:
                    _remove(Path(entry.path))


def run_alive(base: Path, run_id: str) -> bool:
    lock = base / f"{run_id}{LOCK_SUFFIX}"
    return lock.exists() and not _is_dead(lock)


def short_name(name: str) -> str:
    """``name`` cut to ``NAME_KEEP`` bytes (UTF-8), so a temp name built on it fits in the 255
    bytes a file name may have, however long the results file's name is."""
    return name.encode()[:NAME_KEEP].decode(errors="ignore")


def _beside_prefix(target: Path) -> str:
    return f".{short_name(target.name)}."


def sweep_beside(target: Path, base: Path) -> None:
    """Delete ``.<name>.<id>.batchops-tmp`` files beside ``target`` left by dead runs."""
    start = _beside_prefix(target)
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            name = entry.name
            if name.startswith(start + _PREFIX) and name.endswith(BESIDE_SUFFIX):
                run = name[len(start) : -len(BESIDE_SUFFIX)]
                if not run_alive(base, run):
                    Path(entry.path).unlink(missing_ok=True)
