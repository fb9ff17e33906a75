"""Folders and files that could hold something private: folders 0700, files 0600.

``.batchops/`` holds caches that can name URLs and paths, the local backend's data and signing
key, downloads of results and the daemon's git clone; none of it is for other users of the
machine. Called by every module that creates something under it (``results``, ``datasets``,
``apply``, ``watch``, ``cli.backend``). Imports nothing of ours.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, *, root: Path) -> Path:
    """Create ``path`` and every folder between ``root`` and it with mode 0700, and tighten
    those that already exist (an older version made them with the umask, usually 0755)."""
    root.mkdir(parents=True, exist_ok=True)  # the project's own folder keeps the umask
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        try:
            current.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            mode = current.stat().st_mode
            if current.is_dir() and mode & 0o077:
                with contextlib.suppress(PermissionError):  # another user's folder: leave it
                    current.chmod(FOLDER_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if it is missing; tighten it if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        with contextlib.suppress(PermissionError):  # writable but another user's: leave it
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def write_atomic_text(path: Path, text: str, *, prefix: str) -> None:
    """``text`` into ``path`` whole or not at all: a temp file beside it, then a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
