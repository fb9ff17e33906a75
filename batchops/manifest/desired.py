"""The desired state: what the manifests declare, typed, located, and free of YAML details.

``batchops.manifest.load_desired`` returns a ``Desired``; the planner and the reconciler read only
these types. Paths are absolute and already confined to the root; every declaration keeps the
``Source`` it came from so that later problems can still point at a file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
class TemplatePart:
    """One template text (a message's content, or the prompt) and where its first line is."""

    text: str
    origin: Source  # the manifest value, or line 1 of a template file
    role: str | None = None  # system | user | assistant; None for a completion prompt
    block: bool = False  # a YAML block scalar: template line n is at origin.line + n
    # (otherwise line n is at origin.line + n - 1: a one-line value, or a template file)


@dataclass(frozen=True)
class SourceDecl:
    """A dataset rendered from a table (``spec.source`` + ``spec.template``)."""

    path: str  # the table (file or folder of shards) relative to the root (posix), for display
    files: tuple[Path, ...]  # absolute; one file, or the sorted top-level shards of the folder
    format: str  # csv | tsv | jsonl | parquet
    parts: tuple[TemplatePart, ...]
    id_column: str | None = None
    id_origin: Source | None = None
    where: str | None = None
    where_origin: Source | None = None
    limit: int | None = None
    template_files: tuple[Path, ...] = ()  # absolute; watched and hashed like the table
    # ``source: {job: NAME}``: the table is built from these (expanded) jobs' verified results
    # (``batchops.sources.chain``); ``files`` is empty until then. combine: each | all.
    upstream: tuple[str, ...] = ()
    combine: str = "each"


@dataclass(frozen=True)
class DatasetDecl:
    name: str
    path: str  # as written in the manifest, relative to the root (posix), for display
    files: tuple[Path, ...]  # absolute; one file, or the sorted top-level *.jsonl shards
    source: Source
    format: str | None = None  # CHAT | COMPLETION | None (auto)
    labels: dict[str, str] = field(default_factory=dict)
    # Rendered from a table: ``files`` is empty until ``batchops.sources.render_all`` fills it
    # with the rendered artifact (under .batchops/rendered/).
    render: SourceDecl | None = None


@dataclass(frozen=True)
class TableDecl:
    """``spec.output.table``: answers joined to their inputs, written on every merge."""

    path: Path  # absolute
    format: str  # csv | parquet | jsonl
    columns: tuple[str, ...] | None = None  # the input columns to carry; None: all

    @property
    def stamp(self) -> str:
        """What the table written must have been written for (kept in the result record)."""
        return f"{self.path}\0{self.format}\0{','.join(self.columns or ('*',))}"


@dataclass(frozen=True)
class Canary:
    rows: int = 50
    max_failed_rows: int = 0


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
    reuse: bool = True  # `spec.reuse`: answers already paid for are not asked again
    row_retries: int = 2  # `spec.rowRetries`: follow-up jobs of transiently failed rows
    canary: Canary | None = None  # `spec.canary`: a sample runs first
    labels: dict[str, str] = field(default_factory=dict)
    response_schema: dict[str, Any] | None = None  # spec.responseFormat's JSON Schema
    table: TableDecl | None = None
    max_failed_rows: int = 0  # failed rows allowed ...
    max_failed_percent: float | None = None  # ... or a share of the input rows ("2%" -> 2.0)
    max_retries: int = 1  # --retry-failed attempts per spec
    provider: str = "fireworks"  # `spec.provider`: fireworks or a provider batchops.yaml declares
    # A matrix (or a per-combination chain) expands one declared job into several: ``group`` is
    # the declared name, ``combination`` the (key, value) pairs this one runs with.
    group: str | None = None
    combination: tuple[tuple[str, str], ...] = ()
    position: int = 0  # its place among the group's jobs, in the order the matrix declares them
    # The (expanded) jobs whose verified results this one waits for: its chained input's
    # upstream and ``spec.dependsOn``.
    depends_on: tuple[str, ...] = ()

    @property
    def declared_name(self) -> str:
        return self.group or self.name

    def allowed_failures(self, total: int) -> int:
        """Failed rows this job may have out of ``total`` before it counts as failed."""
        if self.max_failed_percent is None:
            return self.max_failed_rows
        return int(total * self.max_failed_percent / 100)

    max_cost: float | None = None  # spec.budget.maxCost (US dollars)


@dataclass(frozen=True)
class Desired:
    root: Path  # the repository root every relative path is confined to
    datasets: tuple[DatasetDecl, ...] = ()  # sorted by name
    jobs: tuple[JobDecl, ...] = ()  # sorted by name
    manifest_files: tuple[Path, ...] = ()  # every manifest file read (absolute), for the watcher
    moved: tuple[Moved, ...] = ()  # renames from the project file, checked against the names
    # Datasets rendered from a job's results that are not verified yet (``batchops.chains``):
    # left out of ``datasets``; the jobs reading them wait (``batchops.plan.graph``).
    waiting: frozenset[str] = frozenset()
    # Those datasets' declarations (their upstream and ``limit``): what bounds the rows of a
    # waiting stage in the plan's cost (``batchops.cost.rows_at_most``).
    pending: tuple[DatasetDecl, ...] = ()

    def moved_from(self, kind: str, name: str) -> str | None:
        """The name the declared ``kind`` ("Dataset" | "BatchInferenceJob") ``name`` had."""
        return next((m.old for m in self.moved if m.new == name and m.applies_to(kind)), None)

    def with_files(self, files: dict[str, Path], root: Path) -> Desired:
        """The rendered datasets pointing at their artifacts (``batchops.sources.render_all``);
        one that did not render (it has problems) is left out."""
        datasets = tuple(
            replace(d, files=(files[d.name],), path=_shown(files[d.name], root))
            if d.name in files
            else d
            for d in self.datasets
            if d.render is None or d.name in files
        )
        waiting = frozenset(
            d.name
            for d in self.datasets
            if d.render is not None and d.render.upstream and d.name not in files
        )
        pending = tuple(d for d in self.datasets if d.name in waiting)
        return replace(
            self,
            datasets=datasets,
            waiting=self.waiting | waiting,
            pending=(*self.pending, *pending),
        )

    def dataset(self, name: str) -> DatasetDecl | None:
        return self._datasets_by_name.get(name)

    def matrix(self, name: str) -> list[JobDecl]:
        """The jobs of the matrix declared as ``name``, in the order it declares them; [] when
        ``name`` is not a matrix's."""
        return sorted((j for j in self.jobs if j.group == name), key=lambda j: j.position)

    @cached_property
    def _datasets_by_name(self) -> dict[str, DatasetDecl]:  # names are unique (validated)
        return {d.name: d for d in self.datasets}


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
