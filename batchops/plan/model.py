"""The plan as data: Kinds, Actions, Plan, PlanOptions, and the planner's inputs (Observed).

Made by ``batchops.plan.make``; executed by ``batchops.apply``, printed by ``batchops.render``.
``Observed`` holds the provider-neutral model (``batchops.providers``), never a provider's wire
types.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from batchops.manifest.desired import JobDecl, TableDecl
from batchops.money import CostReport
from batchops.plan.rowerrors import FailureSummary
from batchops.providers import DatasetSpec, JobSpec, RemoteInput, RemoteJob
from batchops.results import ResultRecord


class Kind(StrEnum):
    CREATE_DATASET = "create-dataset"
    CREATE_JOB = "create-job"
    REPLACE_JOB = "replace-job"
    RETRY_JOB = "retry-job"
    RESUME_JOB = "resume-job"
    # A concurrent apply's duplicate batch on a provider with server-assigned IDs: the oldest is
    # kept, the others are cancelled (docs/providers-openai.md).
    CANCEL_DUPLICATE = "cancel-duplicate"
    PRUNE_JOB = "prune-job"
    PRUNE_DATASET = "prune-dataset"
    DOWNLOAD = "download"
    WAIT = "wait"
    WAITS = "waits"  # a pipeline stage whose upstream results are not verified yet: nothing sent
    FAILED = "failed"
    EXPIRED = "expired"
    CONFLICT = "conflict"
    MOVED = "moved"  # a rename (project file `moved`): the old name's resources are adopted


REMOTE_CHANGES = frozenset(
    {
        Kind.CREATE_DATASET,
        Kind.CREATE_JOB,
        Kind.REPLACE_JOB,
        Kind.RETRY_JOB,
        Kind.RESUME_JOB,
        Kind.CANCEL_DUPLICATE,
        Kind.PRUNE_JOB,
        Kind.PRUNE_DATASET,
    }
)
LOCAL_CHANGES = frozenset({Kind.DOWNLOAD})
# Presentation and execution order: datasets before the jobs that read them, prunes last.
KIND_ORDER = {kind: i for i, kind in enumerate(Kind)}


@dataclass(frozen=True)
class PlanOptions:
    prune: bool = False
    allow_empty: bool = False
    retry_failed: bool = False
    download: bool = True
    canary_only: bool = False  # `apply --canary-only`: only the canaries' steps
    # None: prune the whole project. Otherwise the plan covers part of it (narrowed paths or
    # selectors) and prunes only owned resources whose name part is one of these manifest names.
    prune_scope: frozenset[str] | None = None


@dataclass(frozen=True, order=True)
class Resource:
    kind: str  # "dataset" | "job"
    name: str  # the manifest name
    remote_id: str


@dataclass(frozen=True)
class DownloadSpec:
    job_name: str
    job_ids: tuple[str, ...]  # the whole lineage, (attempt, resume) order; later wins
    output_dataset_ids: tuple[str, ...]
    input_dataset: str | None  # the declared input dataset ...
    input_files: tuple[Path, ...]  # ... whose files give the expected custom_ids (empty: remote)
    output_path: Path
    output_display: str
    partial: bool  # expired with no resumes left: missing rows are expected
    # The job's request prefix (``batchops.rowid``) when it reuses answers: the merge adds the
    # reused rows from the reuse index and records the new answers there. None: reuse off.
    request_prefix: bytes | None = None
    # Row retries are left: failed rows in the merge mean another pass (it may send them again).
    rows_retry_left: bool = False
    response_schema: Mapping[str, Any] | None = None  # answers must match it (responseFormat)
    table: TableDecl | None = None  # spec.output.table: answers joined to inputs, on every merge
    table_only: bool = False  # the results are current: only the table is written again
    id_column: str | None = None  # the input's idColumn: shown once in the table, as custom_id


@dataclass(frozen=True)
class Action:
    kind: Kind
    resource: Resource
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)
    dataset: DatasetSpec | None = None
    job: JobSpec | None = None
    download: DownloadSpec | None = None
    after: str | None = None  # a dataset this plan creates that must be READY first

    @property
    def rows_to_send(self) -> int | None:
        """Rows this job action sends (reused rows excluded): what cost counts; None when
        unknown (an input that is not a declared dataset)."""
        value = self.details.get("rowsToSend")
        return value if isinstance(value, int) else None

    @property
    def group(self) -> str:
        return "local" if self.kind in LOCAL_CHANGES else "remote"

    @property
    def is_change(self) -> bool:
        return self.kind in REMOTE_CHANGES or self.kind in LOCAL_CHANGES

    def sort_key(self) -> tuple[int, int, str, str]:
        return (
            self.group == "local",
            KIND_ORDER[self.kind],
            self.resource.name,
            self.resource.remote_id,
        )


@dataclass(frozen=True)
class CanaryOutcome:
    """One declared job's canary, for the step summary: its state and a few answers."""

    job: str  # the declared job's name
    state: str  # absent | running | failed | passed
    rows: int
    failed_rows: int
    answers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class StageInfo:
    """One declared job of a pipeline (a matrix counts once) and where it stands."""

    stage: int  # 1 + the deepest stage it depends on
    name: str  # the declared name
    jobs: tuple[str, ...]  # the jobs it expands into
    waits_on: tuple[str, ...]  # declared names of the stages it waits on (now)
    state: (
        str  # ready | running | completed (results not merged) | done | waiting | blocked | failed
    )


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    fingerprint: str
    project: str
    options: PlanOptions = PlanOptions()
    job_states: tuple[tuple[str, str], ...] = ()  # (declared job, state of its latest job)
    orphan_jobs: int = 0  # owned jobs in scope no manifest declares (what --prune would delete)
    superseded_jobs: int = 0  # owned jobs of an older spec of a declared job (--prune deletes)
    outside_jobs: int = 0  # declared jobs left out by selectors (set by the reconciler)
    outside_datasets: int = 0
    canaries: tuple[CanaryOutcome, ...] = ()  # each job declaring a canary (plan.canary)
    cost: CostReport | None = None  # tokens and dollars (batchops.cost, set by the reconciler)
    # Each declared job with its results record when that is current (merged up to the latest
    # job): what the failed-rows check (spec.maxFailedRows) reads, with where to point at.
    declared: tuple[tuple[JobDecl, ResultRecord | None], ...] = ()
    stages: tuple[StageInfo, ...] = ()  # a pipeline's stages (plan.graph); empty without edges

    def decl(self, name: str) -> JobDecl | None:
        return self._decls.get(name)

    @cached_property
    def _decls(self) -> dict[str, JobDecl]:
        return {d.name: d for d, _ in self.declared}

    @property
    def remote_changes(self) -> list[Action]:
        return [a for a in self.actions if a.kind in REMOTE_CHANGES]

    @property
    def local_changes(self) -> list[Action]:
        return [a for a in self.actions if a.kind in LOCAL_CHANGES]

    @property
    def has_changes(self) -> bool:
        return any(a.is_change for a in self.actions)

    def count(self, kind: Kind) -> int:
        return self._counts[kind]

    @cached_property
    def _counts(self) -> Counter[Kind]:
        return Counter(a.kind for a in self.actions)


@dataclass(frozen=True)
class RowFailures:
    """Rows of a declared job's merged results that failed, against its spec.maxFailedRows."""

    job: str
    failed: int
    total: int
    allowed: int
    first_errors: tuple[str, ...]  # "custom_id: message", the first few
    summary: FailureSummary | None = None  # by class (transient / permanent) and reason

    @property
    def over_limit(self) -> bool:
        return self.failed > self.allowed


def sort_actions(actions: Iterable[Action]) -> tuple[Action, ...]:
    return tuple(sorted(actions, key=Action.sort_key))


class DatasetFacts(Protocol):
    """What the planner needs of ``batchops.datasets.DatasetInfo``."""

    @property
    def sha256(self) -> str: ...
    @property
    def rows(self) -> int: ...
    @property
    def size(self) -> int: ...


@dataclass(frozen=True)
class Observed:
    """What the providers reported: every input and job of the account (from the list calls),
    in the provider-neutral model."""

    datasets: tuple[RemoteInput, ...] = ()
    jobs: tuple[RemoteJob, ...] = ()
    # (provider name, its max_id_length): the IDs the planner names fit there (identity.job_key)
    id_limits: tuple[tuple[str, int], ...] = ()
