"""Path rules for manifests: everything stays inside the root.

Called by ``batchops.manifest.loader``. Dataset paths are relative to the manifest file's folder;
job output paths are relative to the root. Absolute paths, ``..`` that climbs out of the root, and
symlinks that point out of it are refused. Each check returns an error message or the result.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PureWindowsPath

SHARD_SUFFIX = ".jsonl"


class PathProblem(Exception):
    """A path breaks a rule; the message is shown as a Diagnostic at the offending value."""


def display(path: Path, root: Path) -> str:
    """``path`` relative to the root, posix style, or as given when it is outside."""
    p, r = str(path), str(root)
    if os.name != "nt" and p.startswith(r.rstrip("/") + "/"):
        return p[len(r.rstrip("/")) + 1 :]  # what relative_to says, without its parsing
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def inside(path: Path, root: Path) -> bool:
    """Whether the normalized absolute ``path`` is ``root`` or below it. A string prefix test on
    POSIX: ``root in path.parents`` builds every parent, a tenth of the load at 1,000 jobs."""
    if os.name == "nt":  # case-insensitive comparisons: leave them to pathlib
        return path == root or root in path.parents
    p, r = str(path), str(root)
    return p == r or p.startswith(r if r.endswith("/") else r + "/")


def resolved(path: Path) -> Path | None:
    """``path.resolve()``, or None when it is a symlink loop. Asked of ``stat`` first because
    ``resolve`` differs by version on a loop (3.11 raises RuntimeError, newer ones may return the
    path half-resolved), and an escaped RuntimeError would be a crash instead of a Diagnostic."""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return None


# A folder -> its resolved path (a string) and whether it is a folder now, for one load.
Dirs = dict[str, tuple[str | None, bool]]


def confine(written: str, base: Path, root: Path, *, dirs: Dirs | None = None) -> Path:
    """``base / written``, normalized, after checking it stays in the root (lexically and via
    symlinks). ``root`` must be resolved. Does not require the path to exist. ``dirs`` (one per
    load) remembers each folder's resolution, so 10,000 outputs in one folder cost an lstat
    each instead of a resolve each."""
    if _absolute(written):
        raise PathProblem(f"absolute path '{written}' is not allowed; use a relative path")
    text = os.path.normpath(f"{base}{os.sep}{written}")
    lexical = Path(text)  # one parse, not three
    if not inside(lexical, root):
        raise PathProblem(f"path '{written}' points outside the root")
    if dirs is None or os.name == "nt":
        real = resolved(lexical)
        loop, out = real is None, real is not None and not inside(real, root)
    else:  # strings through the folder's remembered resolution: no Path per job
        found = _resolved_in(text, dirs)
        loop, out = found is None, found is not None and not _inside_text(found, str(root))
    if loop:
        raise PathProblem(f"path '{written}' is a symlink loop")
    if out:
        raise PathProblem(f"path '{written}' is a symlink to a place outside the root")
    return lexical


def _absolute(written: str) -> bool:
    """Absolute on POSIX or on Windows (a drive and a root, or a UNC share)."""
    if written.startswith("/"):  # what PurePosixPath(written).is_absolute() says, unparsed
        return True
    maybe_windows = ":" in written or written.startswith("\\\\")
    return maybe_windows and PureWindowsPath(written).is_absolute()


def _inside_text(path: str, root: str) -> bool:
    """``inside`` on POSIX, for strings."""
    return path == root or path.startswith(root if root.endswith("/") else root + "/")


def _resolved_in(path: str, dirs: Dirs) -> str | None:
    """``resolved(path)`` through its folder's remembered resolution; the whole path is resolved
    when its last part is a symlink or its folder did not resolve."""
    folder, name = os.path.split(path)
    real_folder, present = _folder(folder, dirs)
    try:  # nothing can be in a folder that is not there: no lstat then
        is_link = present and stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        is_link = False  # absent: resolve() keeps the name as written
    if real_folder is None or is_link:
        whole = resolved(Path(path))
        return None if whole is None else str(whole)
    return os.path.join(real_folder, name)  # noqa: PTH118


def _folder(folder: str, dirs: Dirs) -> tuple[str | None, bool]:
    """``folder`` resolved, and whether it is a folder (after symlinks): once per load."""
    known = dirs.get(folder)
    if known is None:
        real = resolved(Path(folder))
        present = os.path.isdir(folder)  # noqa: PTH112
        known = dirs[folder] = (None if real is None else str(real), present)
    return known


def dataset_files(
    written: str, manifest: Path, root: Path, *, dirs: Dirs | None = None
) -> tuple[Path, tuple[Path, ...]]:
    """The dataset's path and its files: itself, or the sorted top-level shards of a folder."""
    path = confine(written, manifest.parent, root, dirs=dirs)
    if not path.exists():
        link = f" (a symlink to '{path.readlink()}')" if path.is_symlink() else ""
        raise PathProblem(f"dataset path '{display(path, root)}'{link} does not exist")
    if path.is_dir():
        return path, _shards(path, root)
    if path.suffix != SHARD_SUFFIX:
        raise PathProblem(f"dataset path '{display(path, root)}' is not a .jsonl file or a folder")
    if not path.is_file():  # a FIFO would hang the read, a device never end
        raise PathProblem(f"dataset path '{display(path, root)}' is not a regular file")
    return path, (path,)


def _shards(folder: Path, root: Path) -> tuple[Path, ...]:
    named = [p for p in folder.iterdir() if p.suffix == SHARD_SUFFIX]
    special = [p for p in named if p.exists() and not p.is_file() and not p.is_dir()]
    if special:  # a FIFO would hang the read, a device never end: refused, not skipped
        raise PathProblem(f"shard '{display(special[0], root)}' is not a regular file")
    shards = sorted(p for p in named if p.is_file())
    if not shards:
        raise PathProblem(f"dataset folder '{display(folder, root)}' has no top-level .jsonl files")
    for shard in shards:
        if not inside(shard.resolve(), root):
            raise PathProblem(f"shard '{display(shard, root)}' is a symlink outside the root")
    return tuple(shards)


def output_file(written: str, root: Path, *, dirs: Dirs | None = None) -> Path:
    if dirs is not None and os.name != "nt":
        quick = _plain_output(written, str(root), dirs)
        if quick is not None:
            return Path(quick)
    path = confine(written, root, root, dirs=dirs)
    if dirs is not None and not _folder(os.path.dirname(str(path)), dirs)[1]:  # noqa: PTH120
        return path  # its folder is not there (yet), so neither is it
    if path.is_dir():
        raise PathProblem(f"output path '{written}' is a folder; name a file")
    return path


def _plain_output(written: str, root: str, dirs: Dirs) -> str | None:
    """``output_file``'s answer (as a string) for a plain file name in a folder that resolves
    inside the root and holds no symlink or folder by that name; None when anything needs the
    long way (which then words the problem). The folder's facts are remembered in ``dirs``, so
    10,000 results in one folder cost a string join each (and an lstat when the folder exists),
    not a normalization, a Path parse and a resolution each."""
    head, _, name = written.rpartition("/")
    if not name or name in (".", "..") or "\0" in written or _absolute(written):
        return None
    key = f"\0{root}\0{head}"  # not a path: no folder's entry can take this key
    known = dirs.get(key)
    if known is None:
        folder = os.path.normpath(f"{root}{os.sep}{head}")
        real, present = _folder(folder, dirs)
        plain = real is not None and _inside_text(folder, root) and _inside_text(real, root)
        known = dirs[key] = (folder if plain else None, present)
    plain_folder, present = known
    if plain_folder is None:
        return None
    sep = "" if plain_folder.endswith(os.sep) else os.sep
    path = f"{plain_folder}{sep}{name}"
    if present:  # one lstat: a symlink or a folder by this name takes the long way
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return path
        except OSError:  # a name too long, say: the long way says what pathlib says
            return None
        if stat.S_ISLNK(mode) or stat.S_ISDIR(mode):
            return None
    return path
