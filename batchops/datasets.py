"""Local JSONL datasets: stream-validate, hash, and skip unchanged files through a stat cache.

Called by ``batchops.cli.validate`` and the reconciler (``inspect_all``), and by ``apply`` to check
merged results (``iter_custom_ids``). One read per file does everything: 8 MiB blocks are hashed
(sha256, in a helper thread: hashlib releases the GIL on big buffers) while the complete lines of
the block are decoded in one C call by the typed msgspec decoder of the dataset's format and the
block's UTF-8 is checked. From 32 MiB up, a helper process (``batchops/utf8check.py``) hashes the
file and checks its UTF-8 instead, beside our read, so both cores work. Only a block that fails
the fast checks is re-read line by line with the standard library, to say precisely what is wrong
and where.

Dataset digest: a single-file dataset's ``sha256`` is the file's sha256; a folder of shards has the
sha256 of the text ``"<basename>\\t<shard sha256>\\n"`` for each shard, sorted by basename.

This module sits beside ``batchops.manifest`` in the layering (neither imports the other), so it
takes the manifest's declarations structurally (``DatasetLike`` / ``DesiredLike``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import msgspec

from batchops import chunkpool, scanpool
from batchops.config import STATE_DIR, ensure_state_dir_above
from batchops.errors import Diagnostic, InvalidInputError
from batchops.gcpause import gc_paused
from batchops.idset import CompactIds, ExactIds, SeenIds
from batchops.private import private_dir, write_atomic_text
from batchops.rowcheck import (
    DUPLICATE,
    IDS,
    FileProblems,
    Lines,
    Scan,
    display,
)

DEFAULT_MAX_BYTES = 500 * 2**20
# Big blocks let the sha256 thread overlap our decoding: each of its trips through the GIL may wait
# a switch interval (5 ms) while we decode; at 1 MiB that serialised the two (bench/validate.py).
BLOCK = 8 * 2**20
# From this size a helper process hashes a file and checks its UTF-8 beside our read (_scan_file).
HELPER_MIN = 32 * 2**20
HELPER = Path(__file__).with_name("utf8check.py")
_SHA256 = re.compile(r"[0-9a-f]{64}")
CACHE_FILE = Path(STATE_DIR, "cache", "datasets.json")


# -- what we are given ------------------------------------------------------------------------


class DatasetLike(Protocol):
    """What we need of ``batchops.manifest.desired.DatasetDecl``."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def files(self) -> tuple[Path, ...]: ...
    @property
    def format(self) -> str | None: ...


class DesiredLike(Protocol):
    """What we need of ``batchops.manifest.desired.Desired``."""

    @property
    def datasets(self) -> Sequence[DatasetLike]: ...


# -- what we return ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardInfo:
    path: Path  # absolute
    size: int
    sha256: str
    rows: int


@dataclass(frozen=True)
class DatasetInfo:
    sha256: str  # see the module docstring for folders of shards
    rows: int
    size: int
    files: tuple[ShardInfo, ...]
    format: str  # CHAT | COMPLETION


def _duplicate_id(diag: Diagnostic) -> str | None:
    message = diag.message
    return message[len(DUPLICATE) + 1 : -1] if message.startswith(DUPLICATE) else None


def _where_first(diags: list[Diagnostic], files: Sequence[Path], root: Path) -> list[Diagnostic]:
    """Each duplicate custom_id shown also says where it first appeared. Only a dataset with
    duplicates pays for it: one more read, up to the last first occurrence."""
    wanted = {cid for d in diags if (cid := _duplicate_id(d)) is not None}
    first = _first_lines(files, wanted, root) if wanted else {}
    return [
        replace(d, message=f"{d.message} (first at {first[cid]})")
        if (cid := _duplicate_id(d)) in first
        else d
        for d in diags
    ]


def _first_lines(files: Sequence[Path], wanted: set[str], root: Path) -> dict[str, str]:
    first: dict[str, str] = {}
    for path in files:
        with contextlib.suppress(OSError), path.open("rb") as f:  # gone since: say nothing more
            for number, line in enumerate(f, start=1):
                try:
                    custom_id = IDS.decode(line).custom_id
                except (msgspec.DecodeError, UnicodeDecodeError):
                    continue
                if custom_id in wanted and custom_id not in first:
                    first[custom_id] = f"{display(path, root)}:{number}"
                    if len(first) == len(wanted):
                        return first
    return first


# -- one file: a single read that hashes and validates ------------------------------------------


def _scan_file(path: Path, size: int, scan: Scan) -> ShardInfo:
    """One file. A big one is hashed and has its UTF-8 checked by a helper process while we
    decode its rows: checking UTF-8 holds the GIL as long as decoding does, so no thread could
    overlap the two. Should the helper find a bad byte (or fail), the file is read again with
    everything done here, to say exactly where."""
    helper = _Helper.start(path) if size >= HELPER_MIN else None
    if helper is None:
        return _read_file(path, size, scan, hashing=True)
    mark = scan.mark()
    try:
        scan.utf8_inline = False
        shard = _read_file(path, size, scan, hashing=False)
        sha256 = helper.sha256()
    finally:
        scan.utf8_inline = True
        helper.stop()
    if sha256 is not None:
        return ShardInfo(path, size, sha256, shard.rows)
    scan.rewind(mark)
    return _read_file(path, size, scan, hashing=True)


def _read_file(path: Path, size: int, scan: Scan, *, hashing: bool) -> ShardInfo:
    problems = FileProblems(display(path, scan.root))
    if size == 0:
        problems.add(1, 1, "file is empty")
    digest, lines = hashlib.sha256(), Lines(scan, problems)
    with path.open("rb", buffering=0) as f, ThreadPoolExecutor(1, "sha256") as pool:
        pending: Future[None] | None = None
        while block := f.read(BLOCK):
            if pending is not None:
                pending.result()
            if hashing:
                pending = pool.submit(digest.update, block)  # hashes while we decode
            lines.feed(block)
        lines.finish()
        if pending is not None:
            pending.result()
    scan.diags.extend(problems.all())
    return ShardInfo(path, size, digest.hexdigest() if hashing else "", lines.rows)


class _Helper:
    """``batchops/utf8check.py`` on one file, in its own interpreter (stdlib only: ~10 ms to
    start). Anything but its clean answer counts as "not known valid": the caller re-reads."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    @classmethod
    def start(cls, path: Path) -> _Helper | None:
        if not sys.executable:  # an embedded interpreter: no Python to start
            return None
        args = [sys.executable, "-I", "-S", str(HELPER), str(path)]
        try:
            return cls(
                subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            )
        except OSError:
            return None

    def sha256(self) -> str | None:
        """The file's sha256 when it is UTF-8 and the helper ended cleanly, else None."""
        out, _ = self.proc.communicate()
        answer = out.decode("ascii", "replace").split()
        if self.proc.returncode == 0 and len(answer) == 2 and answer[0] == "utf-8":
            return answer[1] if _SHA256.fullmatch(answer[1]) else None
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:  # we were interrupted: it has nothing left to tell us
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- the stat cache -----------------------------------------------------------------------------


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class StatCache:
    """(size, mtime_ns, inode) -> (sha256, rows, format) per file, as JSON at ``path``.

    Like git's index: an unchanged file is never read again. Only files that validated cleanly
    are stored. Written atomically (temp file + os.replace); a missing or corrupt file is empty.
    """

    def __init__(self, path: Path, *, root: Path | None = None) -> None:
        self.path = path
        self._root = root  # with a root, the folders up to it are private (0700)
        self._entries: dict[str, dict[str, Any]] | None = None
        self._dirty = False

    @classmethod
    def for_root(cls, root: Path) -> StatCache:
        return cls(root / CACHE_FILE, root=root)

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # a corrupt cache is an empty one
            return {}
        files = data.get("files") if isinstance(data, dict) else None
        return files if isinstance(files, dict) else {}

    def lookup(self, path: Path, st: os.stat_result) -> dict[str, Any] | None:
        entry = self.entries.get(str(path))
        if isinstance(entry, dict) and entry.get("stat") == _stat_key(st):
            return entry
        return None

    def store(self, shard: ShardInfo, st: os.stat_result, fmt: str) -> None:
        entry = {"stat": _stat_key(st), "sha256": shard.sha256, "rows": shard.rows, "format": fmt}
        self.entries[str(shard.path)] = entry
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        self._prune()
        ensure_state_dir_above(self.path.parent)  # .batchops/ ignores itself
        if self._root is not None:
            private_dir(self.path.parent, root=self._root)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"version": 1, "files": self.entries}, indent=1, sort_keys=True)
        write_atomic_text(self.path, body, prefix=".datasets-")
        self._dirty = False

    def _prune(self) -> None:
        """Forget files that are gone: a watch daemon's project would otherwise keep every
        dataset file it ever saw (renamed shards, deleted data) in the cache forever."""
        for key in [k for k in self.entries if not Path(k).exists()]:
            del self.entries[key]


# -- public entry points ------------------------------------------------------------------------


def inspect_dataset(
    decl: DatasetLike,
    *,
    root: Path,
    max_bytes: int = DEFAULT_MAX_BYTES,
    cache: StatCache | None = None,
) -> DatasetInfo:
    """Validate and hash one dataset (all its shards). Raises InvalidInputError with every
    problem; reads nothing when every shard is unchanged since it last validated."""
    root = root.resolve()
    stats = _stats(decl, root, max_bytes)
    hit = _from_cache(decl, stats, root, cache)
    if hit is not None:
        return hit
    with gc_paused():  # millions of short-lived rows, no cycles (DESIGN.md section 10)
        found = _scan_shared(decl, stats, root)
        scan, shards = found or _scan_all(decl, stats, root, CompactIds())
        if scan.seen.doubtful():  # a custom_id repeats (or two share a digest): say exactly
            scan, shards = _scan_all(decl, stats, root, ExactIds())
    if scan.diags:
        raise InvalidInputError(_where_first(scan.diags, [path for path, _ in stats], root))
    fmt = scan.format or decl.format or "CHAT"
    if cache is not None:
        _remember(cache, shards, stats, fmt)
    return _info(decl, root, shards, fmt)


def _scan_all(
    decl: DatasetLike, stats: list[tuple[Path, os.stat_result]], root: Path, seen: SeenIds
) -> tuple[Scan, tuple[ShardInfo, ...]]:
    scan = Scan(root, decl.format, seen=seen)
    return scan, tuple(_scan_file(path, st.st_size, scan) for path, st in stats)


def _scan_shared(
    decl: DatasetLike, stats: list[tuple[Path, os.stat_result]], root: Path
) -> tuple[Scan, tuple[ShardInfo, ...]] | None:
    """A big dataset read by helper processes on every core (``batchops.scanpool``), when all
    of it is good; None sends the caller to read it here, which says what is wrong and where."""
    files = [(path, st.st_size) for path, st in stats]
    helpers = chunkpool.helpers_for([size for _, size in files])
    found = scanpool.scan(files, decl.format, helpers) if helpers else None
    if found is None:
        return None
    shards = tuple(
        ShardInfo(path, size, sha256, rows)
        for (path, size), sha256, rows in zip(files, found.sha256, found.rows, strict=True)
    )
    return Scan(root, found.format, seen=found.seen), shards


def _stats(decl: DatasetLike, root: Path, max_bytes: int) -> list[tuple[Path, os.stat_result]]:
    diags, stats = [], []
    for path in decl.files:
        try:
            st = path.stat()
        except OSError as exc:
            diags.append(Diagnostic(display(path, root), 1, 1, f"cannot read: {exc.strerror}"))
            continue
        if not stat.S_ISREG(st.st_mode):  # a FIFO blocks the read, a device never ends
            message = f"not a regular file ({special_kind(st.st_mode)}); refused"
            diags.append(Diagnostic(display(path, root), 1, 1, message))
            continue
        if st.st_size > max_bytes:
            # Exact bytes: rounded units made "500.0 MiB; the limit is 500 MiB" look like no excess.
            message = f"file is {st.st_size:,} bytes, over the limit of {max_bytes:,} bytes"
            diags.append(Diagnostic(display(path, root), 1, 1, message))
        stats.append((path, st))
    if diags:
        raise InvalidInputError(diags)
    return stats


def special_kind(mode: int) -> str:
    """What a non-regular file is, for messages: 'a FIFO', 'a character device', ..."""
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _from_cache(
    decl: DatasetLike, stats: list[tuple[Path, os.stat_result]], root: Path, cache: StatCache | None
) -> DatasetInfo | None:
    if cache is None:
        return None
    entries = [cache.lookup(path, st) for path, st in stats]
    formats = {e["format"] for e in entries if e is not None}
    # All shards must hit: custom_id uniqueness spans shards, so one changed shard means all.
    if None in entries or len(formats) != 1 or (decl.format and decl.format not in formats):
        return None
    shards = tuple(
        ShardInfo(path, st.st_size, e["sha256"], e["rows"])
        for (path, st), e in zip(stats, entries, strict=True)
        if e is not None
    )
    return _info(decl, root, shards, formats.pop())


def _remember(
    cache: StatCache,
    shards: Sequence[ShardInfo],
    stats: list[tuple[Path, os.stat_result]],
    fmt: str,
) -> None:
    for shard, (path, before) in zip(shards, stats, strict=True):
        if _stat_key(path.stat()) == _stat_key(before):  # not rewritten while we read it
            cache.store(shard, before, fmt)
    cache.save()


def _info(decl: DatasetLike, root: Path, shards: tuple[ShardInfo, ...], fmt: str) -> DatasetInfo:
    if Path(root, decl.path).is_dir():
        text = "".join(f"{s.path.name}\t{s.sha256}\n" for s in sorted(shards, key=_name))
        digest = hashlib.sha256(text.encode()).hexdigest()
    else:
        digest = shards[0].sha256
    rows, size = sum(s.rows for s in shards), sum(s.size for s in shards)
    return DatasetInfo(digest, rows, size, shards, fmt)


def _name(shard: ShardInfo) -> str:
    return shard.path.name


def inspect_all(
    desired: DesiredLike,
    *,
    root: Path,
    cache: StatCache | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, DatasetInfo]:
    """Every dataset of ``desired`` by name; one InvalidInputError with all their problems."""
    infos: dict[str, DatasetInfo] = {}
    diags: list[Diagnostic] = []
    for decl in desired.datasets:
        try:
            infos[decl.name] = inspect_dataset(decl, root=root, max_bytes=max_bytes, cache=cache)
        except InvalidInputError as exc:
            diags.extend(exc.diagnostics)
    if diags:
        raise InvalidInputError(sorted(set(diags)))
    return infos


def iter_custom_ids(files: Sequence[Path]) -> Iterator[str]:
    """Every row's custom_id, in file order (blank lines skipped). For checking merged results."""
    for path in files:
        tail: list[bytes] = []  # the partial last line in pieces: it may span many blocks
        with path.open("rb") as f:
            while block := f.read(BLOCK):
                cut = block.rfind(b"\n") + 1
                if cut:
                    rows = IDS.decode_lines(b"".join([*tail, block[:cut]]))
                    yield from (row.custom_id for row in rows)
                    tail = []
                tail.append(block[cut:])
        last = b"".join(tail)
        if last.strip():
            yield IDS.decode(last).custom_id


def dataset_facts(infos: Mapping[str, DatasetInfo]) -> dict[str, dict[str, Any]]:
    """A JSON-ready summary per dataset (for ``validate --output json``)."""
    return {
        name: {
            "sha256": i.sha256,
            "rows": i.rows,
            "size": i.size,
            "format": i.format,
            "files": [s.path.name for s in i.files],
        }
        for name, i in sorted(infos.items())
    }


def iter_rows(files: Sequence[Path], root: Path) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Every row of a dataset that validated, with its file (as shown) and line: what a provider's
    rules read (``batchops.providers.rules``). Streams; blank lines are skipped."""
    for path in files:
        shown = display(path, root)
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if raw.strip():
                    yield shown, number, msgspec.json.decode(raw)
