"""Selectors: `--job NAME` and `-l key=value` narrow the desired state to part of the project.

``batchops.reconcile`` narrows the validated ``Desired`` with ``select`` before planning, and the
CLI parses the flags with ``Selector.of``. A job is selected when its name is one of the ``--job``
names (if any) and its ``metadata.labels`` carry every ``-l`` pair; a dataset is selected when a
selected job reads it. Pure: no I/O.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, replace

from batchops.errors import ConfigError
from batchops.manifest.desired import Desired, JobDecl


@dataclass(frozen=True)
class Selector:
    """What the user asked for; empty (the default) selects everything."""

    jobs: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.jobs or self.labels)

    @classmethod
    def of(cls, jobs: Iterable[str] | None, labels: Iterable[str] | None) -> Selector:
        """From the flags' strings; ``key=value`` is required of every label."""
        return cls(tuple(sorted(set(jobs or ()))), tuple(sorted(set(map(_label, labels or ())))))

    def matches(self, job: JobDecl) -> bool:
        if self.jobs and job.name not in self.jobs and job.group not in self.jobs:
            return False  # a matrix's declared name selects every combination
        return all(job.labels.get(key) == value for key, value in self.labels)

    def to_json(self) -> dict[str, object]:
        return {"jobs": list(self.jobs), "labels": {k: v for k, v in self.labels}}

    @classmethod
    def from_json(cls, data: object) -> Selector:
        if not isinstance(data, dict):
            return cls()
        labels = data.get("labels") or {}
        return cls(tuple(data.get("jobs") or ()), tuple(sorted(dict(labels).items())))


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"invalid label selector {text!r}: use key=value")
    return key.strip(), value.strip()


@dataclass(frozen=True)
class Selection:
    """The narrowed desired state and how many declared jobs and datasets it leaves out."""

    desired: Desired
    outside_jobs: int = 0
    outside_datasets: int = 0


def select(desired: Desired, selector: Selector) -> Selection:
    """Narrow ``desired`` to the selected jobs and the datasets they read; unknown --job names are
    an error (with the closest declared name), and so are labels that select no declared job
    (with the labels that exist)."""
    if not selector.active:
        return Selection(desired)
    _check_names(desired, selector.jobs)
    jobs = tuple(j for j in desired.jobs if selector.matches(j))
    if selector.labels and not jobs:
        raise ConfigError(_no_match(desired, selector))
    read = {j.input_dataset for j in jobs if j.input_dataset}
    datasets = tuple(d for d in desired.datasets if d.name in read)
    narrowed = replace(desired, jobs=jobs, datasets=datasets)
    return Selection(narrowed, len(desired.jobs) - len(jobs), len(desired.datasets) - len(datasets))


def _no_match(desired: Desired, selector: Selector) -> str:
    asked = ", ".join(f"{k}={v}" for k, v in selector.labels)
    names = f" among the jobs {', '.join(map(repr, selector.jobs))}" if selector.jobs else ""
    found = sorted({f"{k}={v}" for j in desired.jobs for k, v in j.labels.items()})
    exist = f"; labels in use: {', '.join(found)}" if found else "; no declared job has labels"
    return f"no declared job has the labels {asked}{names}{exist}"


def _check_names(desired: Desired, names: Iterable[str]) -> None:
    declared = [j.name for j in desired.jobs] + sorted({j.group for j in desired.jobs if j.group})
    unknown = sorted(set(names) - set(declared))
    if not unknown:
        return
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(name, declared, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(f"no job named {name!r} is declared{hint}")
    raise ConfigError("; ".join(problems))
