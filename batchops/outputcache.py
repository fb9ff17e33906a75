"""Job outputs downloaded once per pass, whoever asks first (issue 14).

The first pass after a job finishes needs its output twice: the reuse index reads it to learn
the job's answers (``batchops.reuse_rows.rebuild``, before planning), and the merge reads it to
write the results (``batchops.apply``, after). ``batchops.reconcile.run_pass`` opens one
``OutputCache`` for the pass and hands it to both, so the second asks nothing of the provider.

A finished (or expired) job's output never changes, so what the cache holds cannot be stale within
a pass; it lives in a scratch folder under ``.batchops/`` that is removed when the pass ends.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from batchops.errors import NotFoundError
from batchops.providers import ProgressFn, Provider
from batchops.scratch import Scratch


class OutputCache:
    """``with OutputCache(root) as cache:``; ``job(...)`` downloads and keeps one job's output,
    ``lineage(...)`` serves a lineage from what is kept and downloads only the rest."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._scratch: Scratch | None = None  # made at the first download: most passes have none
        self._kept: dict[str, list[Path]] = {}  # job key -> its folders (empty: no output)
        self._lock = threading.Lock()
        self._count = 0

    def __enter__(self) -> OutputCache:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            scratch, self._scratch = self._scratch, None
            self._kept.clear()
        if scratch is not None:
            scratch.__exit__(kind, exc, tb)

    def _target(self) -> Path:
        with self._lock:
            if self._scratch is None:
                self._scratch = Scratch(self._root).__enter__()
            self._count += 1
            return self._scratch.path / str(self._count)

    def job(
        self, provider: Provider, key: str, *, progress: ProgressFn | None = None
    ) -> list[Path]:
        """One job's output folders, downloaded at most once per pass; ``NotFoundError`` when it
        has none (not kept: asking again asks the provider again)."""
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None:
            return kept
        folders = provider.download_outputs([key], self._target(), progress=progress)
        with self._lock:
            self._kept[key] = folders
        return folders

    def lineage(
        self,
        provider: Provider,
        keys: Sequence[str],
        target: Path,
        *,
        progress: ProgressFn | None = None,
    ) -> list[Path]:
        """``provider.download_outputs(keys, target)``, less the jobs already kept: the same
        folders in lineage order, the same rule (an earlier job without output is skipped, the
        last one's missing raises ``NotFoundError``)."""
        with self._lock:
            kept = {key: self._kept[key] for key in keys if key in self._kept}
        if not kept:
            return provider.download_outputs(keys, target, progress=progress)
        folders: list[Path] = []
        for number, key in enumerate(keys):
            if key in kept:
                folders += kept[key]
                continue
            try:
                folders += provider.download_outputs([key], target / str(number), progress=progress)
            except NotFoundError:
                if number == len(keys) - 1:
                    raise
        return folders
