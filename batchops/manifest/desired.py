"""The desired state: what the manifests declare, typed, located, and free of YAML details.

``batchops.manifest.load_desired`` returns a ``Desired``; the planner and the reconciler read only
these types. Paths are absolute and already confined to the root; every declaration keeps the
``Source`` it came from so that later problems can still point at a file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from batchops.config import Moved

OnExpired = Literal["resume", "stop"]


@dataclass(frozen=True, order=True)
class Source:
    """Where a declaration is: the manifest file relative to the root (posix), 1-based line/col."""

    path: str
    line: int = 1
    col: int = 1


@dataclass(frozen=True)
class DatasetDecl:
    name: str
    path: str  # as written in the manifest, relative to the root (posix), for display
    files: tuple[Path, ...]  # absolute; one file, or the sorted top-level *.jsonl shards
    source: Source
    format: str | None = None  # CHAT | COMPLETION | None (auto)
    labels: dict[str, str] = field(default_factory=dict)
    provider: str = "fireworks"  # `spec.provider`: fireworks or a provider batchops.yaml declares


@dataclass(frozen=True)
class JobDecl:
    name: str
    model: str
    source: Source
    input_dataset: str | None = None  # a DatasetDecl name ...
    input_dataset_id: str | None = None  # ... or an existing remote dataset (ID or resource name)
    display_name: str | None = None
    # camelCase keys as on the wire (maxTokens, temperature, topP, topK, n, extraBody); extraBody
    # stays a mapping here and becomes a JSON string only on the wire.
    inference_parameters: dict[str, Any] = field(default_factory=dict)
    precision: str | None = None
    output_path: Path = Path()  # absolute; default <root>/results/<name>.jsonl
    output_display: str = ""  # the same, relative to the root, for display
    on_expired: OnExpired = "resume"
    max_resumes: int = 3
    labels: dict[str, str] = field(default_factory=dict)
    max_failed_rows: int = 0  # failed rows allowed ...
    max_failed_percent: float | None = None  # ... or a share of the input rows ("2%" -> 2.0)
    max_retries: int = 1  # --retry-failed attempts per spec
    provider: str = "fireworks"  # `spec.provider`: fireworks or a provider batchops.yaml declares

    def allowed_failures(self, total: int) -> int:
        """Failed rows this job may have out of ``total`` before it counts as failed."""
        if self.max_failed_percent is None:
            return self.max_failed_rows
        return int(total * self.max_failed_percent / 100)


@dataclass(frozen=True)
class Desired:
    root: Path  # the repository root every relative path is confined to
    datasets: tuple[DatasetDecl, ...] = ()  # sorted by name
    jobs: tuple[JobDecl, ...] = ()  # sorted by name
    manifest_files: tuple[Path, ...] = ()  # every manifest file read (absolute), for the watcher
    moved: tuple[Moved, ...] = ()  # renames from the project file, checked against the names

    def moved_from(self, kind: str, name: str) -> str | None:
        """The name the declared ``kind`` ("Dataset" | "BatchInferenceJob") ``name`` had."""
        return next((m.old for m in self.moved if m.new == name and m.applies_to(kind)), None)

    def dataset(self, name: str) -> DatasetDecl | None:
        return self._datasets_by_name.get(name)

    @cached_property
    def _datasets_by_name(self) -> dict[str, DatasetDecl]:  # names are unique (validated)
        return {d.name: d for d in self.datasets}
