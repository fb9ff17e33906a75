"""Output paths that would overwrite a file the user owns are manifest errors.

Called by ``batchops.manifest.build`` once every dataset and job is known. A job's results file,
and every file batchops derives from it (``batchops.layout.derived_paths``), may not be a dataset
file or lie inside a dataset folder (it would become a shard), may not be a manifest or any YAML
file, may not be under ``.git/`` or ``.batchops/``, may not sit below a regular file, and may not
be another job's results or errors file. Each rule is checked on the path as written and as
resolved through symlinks. Every offending job is reported, both jobs of a collision included.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from batchops.layout import RESERVED_DIRS, derived_paths
from batchops.manifest import paths as P
from batchops.manifest.desired import DatasetDecl, JobDecl

MANIFEST_SUFFIXES = (".yaml", ".yml")


def output_problems(
    jobs: Sequence[JobDecl], datasets: Sequence[DatasetDecl], manifests: Sequence[Path], root: Path
) -> Iterator[tuple[JobDecl, str]]:
    """(job, message) for each job whose derived files break a rule; jobs in source order."""
    owners = _owners(jobs)
    data_files = {_real(f): d.name for d in datasets for f in d.files}
    data_dirs = {_real(root / d.path): d.name for d in datasets if (root / d.path).is_dir()}
    manifest_files = {_real(m) for m in manifests}
    for job in sorted(jobs, key=lambda j: j.source):
        for target in derived_paths(job.output_path):
            message = (
                _reserved(job, target, root)
                or _under_file(job, target, root)
                or _owned(job, target, root, data_files, data_dirs, manifest_files)
                or _collision(job, target, owners, root)
            )
            if message is not None:
                yield job, message
                break


def _real(path: Path) -> Path:
    return P.resolved(path) or path


def _owners(jobs: Sequence[JobDecl]) -> dict[Path, list[tuple[JobDecl, str]]]:
    """Every derived file (as resolved) -> the jobs writing it, and which file it is to them."""
    owners: dict[Path, list[tuple[JobDecl, str]]] = {}
    for job in sorted(jobs, key=lambda j: j.source):
        for kind, path in zip(("results", "errors"), derived_paths(job.output_path), strict=True):
            owners.setdefault(_real(path), []).append((job, kind))
    return owners


def _shown(path: Path, root: Path) -> str:
    return P.display(path, root)


def _subject(job: JobDecl, target: Path, root: Path) -> str:
    """How a message names ``target``: the output path, or the errors file derived from it."""
    output = f"output path '{job.output_display}'"
    return (
        output
        if target == job.output_path
        else f"{output}: its errors file '{_shown(target, root)}'"
    )


def _reserved(job: JobDecl, target: Path, root: Path) -> str | None:
    for path in (target, _real(target)):
        if not P.inside(path, root):
            continue  # confined already; a link out of the root is reported by paths.confine
        parts = path.relative_to(root).parts
        hit = next((d for d in RESERVED_DIRS if d in parts), None)
        if hit is not None:
            subject = _subject(job, target, root)
            return f"{subject} is inside '{hit}/', which batchops never writes into"
    return None


def _under_file(job: JobDecl, target: Path, root: Path) -> str | None:
    """A folder on the way that is a regular file (or a broken link): nothing can be written."""
    folder = target.parent
    while folder != root and P.inside(folder, root):
        if folder.is_symlink() and not folder.exists():
            return f"{_subject(job, target, root)}: '{_shown(folder, root)}' is a broken symlink"
        if folder.exists() and not folder.is_dir():
            return (f"{_subject(job, target, root)} cannot be written: "
                    f"'{_shown(folder, root)}' is a file, not a folder")  # fmt: skip
        folder = folder.parent
    return None


def _owned(
    job: JobDecl,
    target: Path, root: Path, data_files: dict[Path, str], data_dirs: dict[Path, str],
    manifests: set[Path],
) -> str | None:  # fmt: skip
    subject, real = _subject(job, target, root), _real(target)
    if real != target:
        subject += f" (a symlink to '{_shown(real, root)}')"
    if real in data_files:
        return f"{subject} is a file of dataset '{data_files[real]}'; it would be overwritten"
    for folder in (real, *real.parents):
        if folder in data_dirs:
            return (f"{subject} is inside the folder of dataset '{data_dirs[folder]}'; "
                    "it would become one of its shards")  # fmt: skip
    if real in manifests or target.suffix in MANIFEST_SUFFIXES or real.suffix in MANIFEST_SUFFIXES:
        return f"{subject} is a manifest (YAML) file; results are JSONL"
    if target.is_dir():
        return f"{subject} is a folder; name a file"
    if target.exists() and not target.is_file():
        return f"{subject} exists and is not a regular file"
    return None


def _collision(
    job: JobDecl, target: Path, owners: dict[Path, list[tuple[JobDecl, str]]], root: Path
) -> str | None:
    others = [(o, kind) for o, kind in owners.get(_real(target), []) if o.name != job.name]
    if not others:
        return None
    other, kind = others[0]
    what = "output" if kind == "results" else "errors file"
    return f"{_subject(job, target, root)} is also the {what} of job '{other.name}'"
