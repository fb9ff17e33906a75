"""File events as triggers: watchfiles over the manifest folders, filtered to files that matter.

``batchops.watch.service`` starts one ``FileWatcher`` thread and, after every pass, tells it which
files the manifests read (``update``): the manifests and the dataset files they reference. Events
on other files (results being written, editor swap files, ``.batchops/``) are ignored, so the
daemon does not wake itself. While the manifests do not load, every non-ignored event counts:
the file that fixes them may be one we have never seen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import watchfiles

from batchops.manifest.loader import MANIFEST_SUFFIXES
from batchops.manifest.paths import SHARD_SUFFIX

log = logging.getLogger("batchops.watch.files")

# A new file beside a dataset's shards (or a source table's) may be a new shard.
_SHARDS = frozenset({SHARD_SUFFIX, ".csv", ".tsv", ".parquet"})
IGNORED_DIRS = frozenset({".git", ".batchops", "__pycache__", ".venv", "node_modules"})
DEBOUNCE_MS = 300  # at most this long to group a burst of events (an editor's save, a git reset)
STEP_MS = 50  # ...and yield as soon as the tree has been quiet this long


class _EitherEvent:
    """``is_set`` of either event: watchfiles polls it to end its loop (stop, or new roots)."""

    def __init__(self, a: threading.Event, b: threading.Event) -> None:
        self._a, self._b = a, b

    def is_set(self) -> bool:
        return self._a.is_set() or self._b.is_set()


class FileWatcher:
    def __init__(
        self,
        paths: Sequence[Path],
        *,
        root: Path,
        stop: threading.Event,
        on_change: Callable[[], None],
    ) -> None:
        self._paths = tuple(p.resolve() for p in paths)
        self._root = root.resolve()
        self._stop = stop
        self._on_change = on_change
        self._files: frozenset[Path] | None = None  # None: accept every non-ignored event
        self._dataset_dirs: frozenset[Path] = frozenset()
        self._restart = threading.Event()
        self._roots = self._compute_roots(())
        self.ready = threading.Event()  # set once the first watch is in place (for tests)

    def update(self, files: Iterable[Path] | None) -> None:
        """The files the last load read, or None when it failed. Called from the loop thread."""
        known = None if files is None else frozenset(p.resolve() for p in files)
        self._files = known  # one assignment: the watcher thread sees the old or the new set
        self._dataset_dirs = frozenset(p.parent for p in known or () if p.suffix in _SHARDS)
        roots = self._compute_roots(known or ())
        if roots != self._roots:
            self._roots = roots
            self._restart.set()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="batchops-watch-files", daemon=True)
        thread.start()
        return thread

    def accept(self, change: object, path: str) -> bool:
        """watchfiles' filter: does this event matter?"""
        p = Path(path)
        if IGNORED_DIRS.intersection(p.parts) or p.name.endswith(("~", ".swp", ".tmp")):
            return False
        files = self._files
        if files is None or p in files or p.suffix in MANIFEST_SUFFIXES:
            return True
        return p.suffix in _SHARDS and p.parent in self._dataset_dirs

    def _run(self) -> None:
        while not self._stop.is_set():
            self._restart.clear()
            try:
                self._watch(self._roots)
            except Exception as exc:  # noqa: BLE001 - a vanished folder, say; never let the thread die
                log.warning("file watcher: %s; restarting", exc, extra={"event": "watch_error"})
                self._stop.wait(1.0)

    def _watch(self, roots: tuple[Path, ...]) -> None:
        log.debug("watching %s", ", ".join(map(str, roots)))
        self.ready.set()
        for _changes in watchfiles.watch(
            *roots,
            watch_filter=self.accept,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=_EitherEvent(self._stop, self._restart),
            raise_interrupt=False,
        ):
            self._on_change()

    def _compute_roots(self, files: Iterable[Path]) -> tuple[Path, ...]:
        """The given folders, plus the folder of any referenced file outside them."""
        wanted = [p if p.is_dir() else p.parent for p in self._paths]
        wanted += [f.parent for f in files if not any(f.is_relative_to(w) for w in wanted)]
        existing = sorted({_existing(p, self._root) for p in wanted})
        # Drop folders inside other watched folders: watches are recursive.
        return tuple(
            p for p in existing if not any(p != q and p.is_relative_to(q) for q in existing)
        )


def _existing(path: Path, root: Path) -> Path:
    """The nearest existing folder (a jobs/ that does not exist yet is watched via its parent)."""
    while not path.is_dir() and path != path.parent and path != root:
        path = path.parent
    return path if path.is_dir() else root
