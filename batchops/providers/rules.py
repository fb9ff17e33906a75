"""Each provider kind's own rules for a job and its rows, checked at ``validate`` time.

``batchops.reconcile.load_inputs`` and ``batchops validate`` call ``check_jobs`` after the
manifests and datasets validated (so nothing is sent when a provider would refuse a job). Every
problem is a Diagnostic at file:line. A kind's rules are a function ``check_job(job, rows)`` in
``RULES``' module, imported on first use; ``rows`` is a callable so that a kind whose rules need
no rows (Fireworks) never reads the dataset again.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from batchops.config import BUILTIN_PROVIDER, ProjectConfig, ProviderConfig
from batchops.errors import Diagnostic

# kind -> "module:function" of its rules.
RULES: dict[str, str] = {
    "fireworks": "batchops.providers.fireworks.rules:check_job",
    "openai": "batchops.providers.openai.rules:check_job",
}


@dataclass(frozen=True)
class DatasetRow:
    """One dataset row where it was read: its file (as shown to people), line and object."""

    path: str
    line: int
    row: Mapping[str, Any]


@dataclass(frozen=True)
class JobCheck:
    """What a provider's rules see of a declared job (manifest form, camelCase parameters)."""

    name: str
    provider: ProviderConfig
    model: str
    parameters: Mapping[str, Any]
    precision: str | None
    path: str  # the manifest declaring it, and where
    line: int
    col: int = 1
    limits: Mapping[str, int] = field(default_factory=dict)
    # (line, col) of a field of the job's manifest, by its dotted path under ``spec``
    # (``inferenceParameters.topK``); None where it is not written (the job's own line then)
    locate: Callable[[str], tuple[int, int] | None] | None = None

    def at(self, message: str, *, field: str | None = None) -> Diagnostic:
        """A problem of the job, at ``field``'s line when it is given and found."""
        pos = self.locate(field) if field is not None and self.locate is not None else None
        line, col = pos if pos is not None else (self.line, self.col)
        return Diagnostic(self.path, line, col, f"{self.name}: {message}")


RowsFn = Callable[[], Iterable[DatasetRow]]


class CheckJob(Protocol):
    def __call__(self, job: JobCheck, rows: RowsFn) -> list[Diagnostic]: ...


def rules_for(kind: str) -> CheckJob | None:
    """The rules of a provider kind; None when this version has none for it."""
    target = RULES.get(kind)
    if target is None:
        return None
    module, _, function = target.partition(":")
    try:
        found: CheckJob | None = getattr(importlib.import_module(module), function, None)
    except ImportError:
        return None
    return found


def provider_config(name: str, project: ProjectConfig | None) -> ProviderConfig:
    """The configuration of provider ``name`` (the built-in ``fireworks`` unless declared)."""
    declared = {p.name: p for p in (project.providers if project else ())}
    return declared.get(name) or ProviderConfig(name=BUILTIN_PROVIDER, kind="fireworks")
