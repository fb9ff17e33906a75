"""Output paths that would overwrite a file the user owns are manifest errors.

Called by ``batchops.manifest.build`` once every dataset and job is known. A job's results file,
and every file batchops derives from it (``batchops.layout.derived_paths``: the errors file and
the ``spec.output.table`` file), may not be a dataset
file or lie inside a dataset folder (it would become a shard), may not be any other file a manifest
or the project file reads (a source table, a template file, a schema file, a tokenizer file: the
``read`` map), may not be a manifest or any YAML
file, may not be under ``.git/`` or ``.batchops/``, may not sit below a regular file, and may not
be another job's results or errors file. Each rule is checked on the path as written and as
resolved through symlinks. Every offending job is reported, both jobs of a collision included.

Paths are handled as strings, each resolved and each folder stat-ed once per load: with pathlib
objects the checks of a thousand jobs sharing one results folder cost 100 ms; this way, a few.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from batchops.layout import RESERVED_DIRS, derived_paths
from batchops.manifest import paths as P
from batchops.manifest.desired import DatasetDecl, JobDecl

# A problem's job, which derived file it is about ("results", "errors", "table"), and the message.
OutputProblem = tuple[JobDecl, str, str]

MANIFEST_SUFFIXES = (".yaml", ".yml")
_WHAT = {
    "results": "also the output",
    "errors": "also the errors file",
    "table": "also the table",
    "folder": "a folder on the way to the output",
}
_KINDS = ("results", "errors", "table")  # the order of ``batchops.layout.derived_paths``
_SEP = os.sep
_RESULTS = ".jsonl"
NAME_MAX = 255  # bytes in one file name, on every common file system


def output_problems(
    jobs: Sequence[JobDecl],
    datasets: Sequence[DatasetDecl],
    manifests: Sequence[Path],
    root: Path,
    read: Mapping[Path, str] | None = None,
) -> Iterator[OutputProblem]:
    """(job, kind, message) for each job whose derived files break a rule (the first such file);
    jobs in source order. ``read``: other files the manifests and project file read -> what each
    is ("the source table of dataset 'x'"); the source tables and templates of rendered datasets
    are added here."""
    ordered = sorted(jobs, key=_source_order)
    check = _Checker(str(root), ordered, datasets, manifests, read or {})
    for job in ordered:
        for kind, target in check.derived[job.name]:
            if check.clean(job, target):
                continue  # the common case, without the full chain of rules
            message = check.target(job, target)
            if message is not None:
                yield job, kind, message
                break


def _source_order(job: JobDecl) -> tuple[str, int, int]:
    """``job.source`` as a plain tuple: the same order, compared in C rather than by the
    dataclass's generated ``__lt__``."""
    s = job.source
    return s.path, s.line, s.col


def _derived(job: JobDecl) -> list[tuple[str, str]]:
    """``batchops.layout.derived_paths`` as (kind, path string) pairs. The errors file of a
    ``<stem>.jsonl`` output is named by slicing, with no Path made (``layout.errors_path``:
    ``<stem>.errors.jsonl``); any other name goes through ``derived_paths`` itself."""
    output = str(job.output_path)
    folder, name = _split(output)
    if job.table is None and name.endswith(_RESULTS) and len(name) > len(_RESULTS):
        folder = folder if folder.endswith(_SEP) else folder + _SEP
        errors = f"{folder}{name[: -len(_RESULTS)]}.errors{_RESULTS}"
        return [("results", output), ("errors", errors)]
    table = job.table.path if job.table is not None else None
    paths = derived_paths(job.output_path, table)
    return [(kind, str(path)) for kind, path in zip(_KINDS, paths, strict=False)]


def _stat(path: str, *, follow: bool = True) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=follow)  # noqa: PTH116 (strings: see the docstring)
    except (OSError, ValueError):
        return None


class _Checker:
    def __init__(
        self,
        root: str,
        jobs: Sequence[JobDecl],
        datasets: Sequence[DatasetDecl],
        manifests: Sequence[Path],
        read: Mapping[Path, str],
    ) -> None:
        """``jobs`` in source order."""
        self.root = root
        self._below = root + _SEP
        self._up: dict[str, tuple[str, ...]] = {}  # folder -> ``_ancestry`` of it, once each
        self._data_dir: dict[str, str | None] = {}  # folder -> the first data folder in its _up
        self._reserved_in: dict[str, tuple[str, ...]] = {}  # folder -> reserved parts in it
        self._clean: dict[str, bool] = {}  # folder -> ``folder_clean``
        self._real: dict[str, str] = {root: root}
        self._lstat: dict[str, os.stat_result | None] = {}  # by real path, from ``real``
        self._folder: dict[str, str | None] = {}
        self.data_files = {self.real(str(f)): d.name for d in datasets for f in d.files}
        self.read = {self.real(str(f)): what for f, what in _read_files(datasets, read).items()}
        folders = ((str(Path(root, d.path)), d.name) for d in datasets)
        self.data_dirs = {self.real(f): name for f, name in folders if Path(f).is_dir()}
        self.manifests = {self.real(str(m)) for m in manifests}
        # Any of these is a file no output may be: one lookup for the quick check.
        self._taken = {*self.data_files, *self.read, *self.data_dirs, *self.manifests}
        self.files: dict[str, list[tuple[JobDecl, str]]] = {}  # derived file -> its jobs
        self.folders: dict[str, list[JobDecl]] = {}  # folder on the way to one -> its jobs
        self.derived = {job.name: _derived(job) for job in jobs}  # names are unique here
        for job in jobs:
            self._own(job)

    def inside(self, path: str) -> bool:
        return path == self.root or path.startswith(self._below)

    def up(self, folder: str) -> tuple[str, ...]:
        """``folder`` and every folder above it below the root: ``_ancestry``, once per folder."""
        known = self._up.get(folder)
        if known is None:
            known = self._up[folder] = tuple(_ancestry(folder, self.root))
        return known

    def data_dir(self, real: str) -> str | None:
        """The first dataset folder among ``real`` and the folders above it (below the root)."""
        if real in self.data_dirs and real.startswith(self._below):
            return real
        folder = _parent(real)
        if folder not in self._data_dir:
            hit = next((f for f in self.up(folder) if f in self.data_dirs), None)
            self._data_dir[folder] = hit
        return self._data_dir[folder]

    def shown(self, path: str) -> str:
        return P.display(Path(path), Path(self.root))

    def real(self, path: str) -> str:
        """``path`` resolved through symlinks, from its resolved parent: one lstat per path."""
        known = self._real.get(path)
        if known is not None:
            return known
        parent, name = _split(path)
        if parent == path or not self.inside(parent):
            real = str(P.resolved(Path(path)) or path)
        else:
            above = self._real.get(parent) or self.real(parent)
            real = above + name if above.endswith(_SEP) else above + _SEP + name  # os.path.join
            # Nothing can exist in a folder that does not: no lstat for the files of a new one.
            gone = above in self._lstat and self._lstat[above] is None
            link = self._lstat[real] = None if gone else _stat(real, follow=False)
            if link is not None and stat.S_ISLNK(link.st_mode):
                real = str(P.resolved(Path(real)) or real)
        self._real[path] = real
        return real

    def stat_of(self, path: str) -> os.stat_result | None:
        """``os.stat(path)``, from the lstat ``real`` made when that showed no symlink."""
        if path in self._lstat:
            known = self._lstat[path]
            if known is None or not stat.S_ISLNK(known.st_mode):
                return known
        return _stat(path)

    def _own(self, job: JobDecl) -> None:
        seen: set[str] = set()
        last = None  # a job's derived files usually share their folder: walked up once
        for kind, path in self.derived[job.name]:
            real = self.real(path)
            parent = _parent(real)
            if parent != last:
                last = parent
                for folder in self.up(parent):
                    if folder not in seen:
                        seen.add(folder)
                        self.folders.setdefault(folder, []).append(job)
            self.files.setdefault(real, []).append((job, kind))

    def clean(self, job: JobDecl, target: str) -> bool:
        """True when ``target`` plainly breaks no rule: ``target`` would return None. A quick
        conjunction of the rules' own tests, with per-folder facts remembered; False (then the
        full chain decides and words the message) whenever anything needs a closer look."""
        if (self._real.get(target) or self.real(target)) != target:
            return False
        if not target.startswith(self._below) or target in self._taken:
            return False
        folder, name = _split(target)
        clean = self._clean.get(folder)
        if not (self.folder_clean(folder) if clean is None else clean) or name in RESERVED_DIRS:
            return False
        if len(name) > NAME_MAX // 4 and len(name.encode()) > NAME_MAX:
            return False
        if target.endswith(MANIFEST_SUFFIXES):
            return False
        here = self._lstat[target] if target in self._lstat else self.stat_of(target)
        if here is not None and not stat.S_ISREG(here.st_mode):  # a symlink: not plain either
            return False
        name = job.name  # plain loops: two generators per file cost a tenth of the check
        for other, _ in self.files.get(target, ()):
            if other.name != name:
                return False
        below = self.folders.get(target)  # a folder of another job's files: rare
        return below is None or all(other.name == name for other in below)

    def folder_clean(self, folder: str) -> bool:
        """No rule can object to ``folder`` itself: no reserved part, no file or broken link on
        the way, no dataset folder above, no job's file among it and the folders above it."""
        known = self._clean.get(folder)
        if known is None:
            known = self._clean[folder] = (
                self.reserved_hit(folder + _SEP + "x") is None
                and self._folder_problem(folder) is None
                and self.data_dir(folder + _SEP + "x") is None
                and not any(f in self.files for f in self.up(folder))
            )
        return known

    def target(self, job: JobDecl, target: str) -> str | None:
        return (
            self._reserved(job, target)
            or self._under_file(job, target)
            or self._owned(job, target)
            or self._collision(job, target)
        )

    def subject(self, job: JobDecl, target: str) -> str:
        """How a message names ``target``: the output path, or the errors file derived from it."""
        output = f"output path '{job.output_display}'"
        if target == str(job.output_path):
            return output
        if job.table is not None and target == str(job.table.path):
            return f"{output}: its table '{self.shown(target)}'"
        return f"{output}: its errors file '{self.shown(target)}'"

    def _reserved(self, job: JobDecl, target: str) -> str | None:
        for path in (target, self.real(target)):
            if not self.inside(path):
                continue  # a link out of the root is reported by paths.confine
            hit = self.reserved_hit(path)
            if hit is not None:
                subject = self.subject(job, target)
                return f"{subject} is inside '{hit}/', which batchops never writes into"
        return None

    def reserved_hit(self, path: str) -> str | None:
        """The first of ``RESERVED_DIRS`` that is a part of ``path`` below the root. A part is
        one of its folder's parts (remembered per folder) or its name."""
        if path == self.root:
            return None
        folder, name = _split(path)
        hits = self._reserved_in.get(folder)
        if hits is None:
            below = folder[len(self.root) :] + _SEP
            hits = tuple(d for d in RESERVED_DIRS if f"{_SEP}{d}{_SEP}" in below)
            self._reserved_in[folder] = hits
        if not hits and name not in RESERVED_DIRS:
            return None
        return next(d for d in RESERVED_DIRS if d in hits or d == name)

    def _under_file(self, job: JobDecl, target: str) -> str | None:
        """A folder on the way that is a regular file (or a broken link): nothing can be written."""
        why = self._folder_problem(_parent(target))
        return None if why is None else f"{self.subject(job, target)} cannot be written: {why}"

    def _folder_problem(self, folder: str) -> str | None:
        if folder == self.root or not self.inside(folder):
            return None
        if folder not in self._folder:
            here, link = _stat(folder), _stat(folder, follow=False)
            if link is not None and here is None:
                why: str | None = f"'{self.shown(folder)}' is a broken symlink"
            elif here is not None and not stat.S_ISDIR(here.st_mode):
                why = f"'{self.shown(folder)}' is a file, not a folder"
            else:
                why = self._folder_problem(_parent(folder))
            self._folder[folder] = why
        return self._folder[folder]

    def _owned(self, job: JobDecl, target: str) -> str | None:
        real = self.real(target)
        why = self._owned_why(target, real)
        if why is None:
            return None
        link = f" (a symlink to '{self.shown(real)}')" if real != target else ""
        return f"{self.subject(job, target)}{link} {why}"

    def _owned_why(self, target: str, real: str) -> str | None:
        if len(os.path.basename(target).encode()) > NAME_MAX:  # noqa: PTH119
            return f"has a name longer than {NAME_MAX} bytes, more than a file system allows"
        if real in self.data_files:
            return f"is a file of dataset '{self.data_files[real]}'; it would be overwritten"
        if real in self.read:
            return f"is {self.read[real]}; it would be overwritten"
        folder = self.data_dir(real)
        if folder is not None:
            return (
                f"is inside the folder of dataset '{self.data_dirs[folder]}'; "
                "it would become one of its shards"
            )
        if (
            real in self.manifests
            or target.endswith(MANIFEST_SUFFIXES)
            or (real.endswith(MANIFEST_SUFFIXES))
        ):
            return "is a manifest (YAML) file; results are JSONL"
        here = self.stat_of(target) if target == real else _stat(target)
        if here is not None and stat.S_ISDIR(here.st_mode):
            return "is a folder; name a file"
        if here is not None and not stat.S_ISREG(here.st_mode):
            return "exists and is not a regular file"
        return None

    def _collision(self, job: JobDecl, target: str) -> str | None:
        """Another job writes this very file, needs a folder where this one writes a file, or
        writes a file where this one needs a folder: one would destroy the other's results."""
        real = self.real(target)
        for other, kind in self.files.get(real, []):
            if other.name != job.name:
                return f"{self.subject(job, target)} is {_WHAT[kind]} of job '{other.name}'"
        for other in self.folders.get(real, []):
            if other.name != job.name:
                return f"{self.subject(job, target)} is {_WHAT['folder']} of job '{other.name}'"
        for folder in self.up(_parent(real)):
            for other, kind in self.files.get(folder, ()):
                if other.name != job.name:
                    what = _WHAT[kind].removeprefix("also ")
                    return (
                        f"{self.subject(job, target)} is inside '{self.shown(folder)}', "
                        f"{what} of job '{other.name}'"
                    )
        return None


def _read_files(datasets: Sequence[DatasetDecl], read: Mapping[Path, str]) -> dict[Path, str]:
    """Every file read to build the datasets and jobs, besides hand-written dataset files."""
    found: dict[Path, str] = {}
    for d in datasets:
        if d.render is not None:
            found.update((f, f"the source table of dataset '{d.name}'") for f in d.render.files)
            template = f"a template file of dataset '{d.name}'"
            found.update((f, template) for f in d.render.template_files)
    found.update(read)
    return found


def _split(path: str) -> tuple[str, str]:
    """``os.path.split`` of a normalized absolute path, as plain string slicing."""
    head, _, name = path.rpartition(_SEP)
    if _SEP != "/" or not head or head[-1] == _SEP:  # Windows, "/x", "//x": the long way
        return os.path.split(path)
    return head, name


def _parent(path: str) -> str:
    """``os.path.dirname`` of a normalized absolute path."""
    return _split(path)[0]


def _ancestry(path: str, root: str) -> Iterator[str]:
    """``path`` and every folder above it, up to (not including) ``root``."""
    while path.startswith(root + _SEP):
        yield path
        path = path.rpartition(_SEP)[0]
