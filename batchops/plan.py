"""The pure planner: (desired, dataset facts, observed, local results, options) -> Plan. No I/O.

``batchops.reconcile`` calls ``make_plan`` once per pass; ``batchops.apply`` executes the Plan and
``batchops.render`` prints it. The decision table is DESIGN.md section 3. A plan is data: a sorted
tuple of Actions (so the plan does not depend on the order of its inputs) plus a fingerprint of what
was observed, so a saved plan can be refused once the world has moved.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from batchops.errors import ConfigError
from batchops.identity import (
    HASH_LEN,
    JobIdParts,
    attempt_id,
    canonical_json,
    continuation_id,
    dataset_id,
    id_name,
    is_ours,
    job_id,
    marked_display_name,
    output_dataset_id,
    owner_of,
    parse_job_id,
)
from batchops.manifest.desired import DatasetDecl, Desired, JobDecl, TableDecl
from batchops.money import CostReport
from batchops.results import LocalResult, ResultRecord
from batchops.wire import (
    DATASET_STATE_READY,
    GONE_JOB_STATES,
    JOB_STATE_CANCELLED,
    JOB_STATE_COMPLETED,
    JOB_STATE_EXPIRED,
    JOB_STATE_FAILED,
    BatchInferenceJob,
    Dataset,
    resource_id,
)


class Kind(StrEnum):
    CREATE_DATASET = "create-dataset"
    CREATE_JOB = "create-job"
    REPLACE_JOB = "replace-job"
    RETRY_JOB = "retry-job"
    RESUME_JOB = "resume-job"
    PRUNE_JOB = "prune-job"
    PRUNE_DATASET = "prune-dataset"
    DOWNLOAD = "download"
    WAIT = "wait"
    FAILED = "failed"
    EXPIRED = "expired"
    CONFLICT = "conflict"
    MOVED = "moved"  # a rename (project file `moved`): the old name's resources are adopted


REMOTE_CHANGES = frozenset(
    {Kind.CREATE_DATASET, Kind.CREATE_JOB, Kind.REPLACE_JOB, Kind.RETRY_JOB, Kind.RESUME_JOB,
     Kind.PRUNE_JOB, Kind.PRUNE_DATASET}
)  # fmt: skip
LOCAL_CHANGES = frozenset({Kind.DOWNLOAD})
# Presentation and execution order: datasets before the jobs that read them, prunes last.
KIND_ORDER = {kind: i for i, kind in enumerate(Kind)}


@dataclass(frozen=True)
class PlanOptions:
    prune: bool = False
    allow_empty: bool = False
    retry_failed: bool = False
    download: bool = True
    # None: prune the whole project. Otherwise the plan covers part of it (narrowed paths or
    # selectors) and prunes only owned resources whose name part is one of these manifest names.
    prune_scope: frozenset[str] | None = None


@dataclass(frozen=True, order=True)
class Resource:
    kind: str  # "dataset" | "job"
    name: str  # the manifest name
    remote_id: str


@dataclass(frozen=True)
class DatasetSpec:
    dataset_id: str
    name: str
    files: tuple[Path, ...]
    rows: int
    size: int
    display_name: str
    format: str | None


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    name: str
    model: str
    input_dataset_id: str  # bare ID
    inference_parameters: dict[str, Any]  # wire form (camelCase; extraBody as JSON text)
    precision: str | None
    output_dataset_id: str  # bare ID
    display_name: str
    continued_from: str | None  # bare job ID


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
    response_schema: Mapping[str, Any] | None = None  # answers must match it (responseFormat)
    table: TableDecl | None = None  # spec.output.table: answers joined to inputs, on every merge


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
    def group(self) -> str:
        return "local" if self.kind in LOCAL_CHANGES else "remote"

    @property
    def is_change(self) -> bool:
        return self.kind in REMOTE_CHANGES or self.kind in LOCAL_CHANGES

    def sort_key(self) -> tuple[int, int, str, str]:
        return (self.group == "local", KIND_ORDER[self.kind], self.resource.name,
                self.resource.remote_id)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    fingerprint: str
    project: str
    options: PlanOptions = PlanOptions()
    job_states: tuple[tuple[str, str], ...] = ()  # (declared job, state of its latest job)
    orphan_jobs: int = 0  # owned jobs in scope no manifest declares (what --prune would delete)
    outside_jobs: int = 0  # declared jobs left out by selectors (set by the reconciler)
    outside_datasets: int = 0
    cost: CostReport | None = None  # tokens and dollars (batchops.cost, set by the reconciler)
    # Each declared job with its results record when that is current (merged up to the latest
    # job): what the failed-rows check (spec.maxFailedRows) reads, with where to point at.
    declared: tuple[tuple[JobDecl, ResultRecord | None], ...] = ()

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

    @property
    def over_limit(self) -> bool:
        return self.failed > self.allowed


def sort_actions(actions: Iterable[Action]) -> tuple[Action, ...]:
    return tuple(sorted(actions, key=Action.sort_key))


__all__ = [
    "Action", "DatasetFacts", "DatasetSpec", "DownloadSpec", "JobSpec", "JobView", "Kind",
    "Observed", "Plan", "PlanOptions", "Resource", "RowFailures", "job_views", "make_plan",
]  # fmt: skip


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
    """What the API reported: every dataset and job of the account (from the list calls)."""

    datasets: tuple[Dataset, ...] = ()
    jobs: tuple[BatchInferenceJob, ...] = ()


@dataclass(frozen=True)
class JobView:
    """One declared job as the world sees it: its IDs, its remote family, its local results."""

    decl: JobDecl
    base_id: str
    input_dataset_id: str
    family: tuple[tuple[JobIdParts, BatchInferenceJob], ...]  # (attempt, resume) order
    foreign: BatchInferenceJob | None  # a job with our ID that is not ours
    result: LocalResult | None
    renamed_from: str | None = None  # the old name whose jobs were adopted (`moved`)

    @property
    def latest(self) -> tuple[JobIdParts, BatchInferenceJob] | None:
        return self.family[-1] if self.family else None

    @property
    def state(self) -> str:
        latest = self.latest
        return (latest[1].state or "JOB_STATE_UNSPECIFIED") if latest else "ABSENT"

    @property
    def chain_ids(self) -> tuple[str, ...]:
        return tuple(_rid(job) for _, job in self.family)

    @property
    def results_current(self) -> bool:
        """The results on disk are verified and merged up to the latest job of the family."""
        latest, result = self.latest, self.result
        record = result.record if result is not None and result.verified else None
        return latest is not None and record is not None and record.last_job_id == _rid(latest[1])


def _rid(resource: BatchInferenceJob | Dataset) -> str:
    return resource_id(resource.name or "")


def wire_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Manifest parameters as the wire has them: extraBody becomes canonical JSON text."""
    out = dict(params)
    if isinstance(out.get("extraBody"), Mapping):
        out["extraBody"] = canonical_json(out["extraBody"])
    return out


def input_id_of(decl: JobDecl, dataset_ids: Mapping[str, str]) -> str:
    if decl.input_dataset:
        return dataset_ids.get(decl.input_dataset, "")
    return resource_id(decl.input_dataset_id or "")


def declared_dataset_ids(
    desired: Desired, infos: Mapping[str, DatasetFacts], project: str, seen: _Seen | None = None
) -> dict[str, str]:
    """Each declared dataset's ID: its own, or, after a rename (`moved`), the old name's ID when
    only that one exists among ours (the dataset is adopted, not uploaded again)."""
    ids = {}
    for d in desired.datasets:
        if d.name not in infos:
            continue
        sha = infos[d.name].sha256
        ids[d.name] = own = dataset_id(project, d.name, sha)
        old = desired.moved_from("Dataset", d.name)
        if seen is not None and old is not None and own not in seen.datasets:
            adopted = dataset_id(project, old, sha)
            ids[d.name] = adopted if adopted in seen.ours_ds_ids else own
    return ids


def base_job_id(decl: JobDecl, input_id: str, project: str) -> str:
    return job_id(
        project, decl.name, model=decl.model, input_dataset_id=input_id,
        inference_parameters=decl.inference_parameters, precision=decl.precision,
    )  # fmt: skip


def job_views(
    desired: Desired,
    infos: Mapping[str, DatasetFacts],
    observed: Observed,
    local: Mapping[str, LocalResult],
    *,
    project: str,
) -> list[JobView]:
    """Each declared job with its family of observed jobs (ours, same base ID), sorted by name."""
    seen = _Seen.of(observed, project)
    ds_ids = declared_dataset_ids(desired, infos, project, seen)
    return _views(desired, ds_ids, seen, local, project)


def _views(
    desired: Desired, ds_ids: Mapping[str, str], seen: _Seen, local: Mapping[str, LocalResult],
    project: str,
) -> list[JobView]:  # fmt: skip
    views = []
    for decl in sorted(desired.jobs, key=lambda j: j.name):
        input_id = input_id_of(decl, ds_ids)
        base = base_job_id(decl, input_id, project)
        old = desired.moved_from("BatchInferenceJob", decl.name)
        adopted = _adopted_base(decl, old, input_id, project, seen, own=base)
        base = adopted or base
        mine, foreign = _split_owned(seen.families.get(base, []))
        views.append(JobView(decl, base, input_id, mine, foreign, local.get(decl.name),
                             renamed_from=old if adopted else None))  # fmt: skip
    return views


def _adopted_base(
    decl: JobDecl, old: str | None, input_id: str, project: str, seen: _Seen, *, own: str
) -> str | None:
    """After a rename (`moved`), the old name's base ID for the same spec, when the account has
    our jobs under it and none under the job's own ID."""
    if old is None or own in seen.families:
        return None
    base = base_job_id(dataclasses.replace(decl, name=old), input_id, project)
    return base if any(ours for _, _, ours in seen.families.get(base, [])) else None


_Member = tuple[JobIdParts, BatchInferenceJob]


@dataclass(frozen=True)
class _Seen:
    """The observed resources indexed once per plan, each ID parsed and each owner read once, so
    that every later lookup is a dict hit: a 1,000-job plan never scans the observed jobs once per
    declared job."""

    datasets: dict[str, Dataset]
    jobs: dict[str, BatchInferenceJob]
    families: dict[str, list[tuple[JobIdParts, BatchInferenceJob, bool]]]  # base -> (.., ours)
    ours_by_name: dict[str, list[_Member]]  # our jobs by the name part of their ID
    ours_ds: dict[tuple[str, int], list[str]]  # our dataset IDs by (ID minus hash, length)
    ours_ds_ids: set[str]  # our dataset IDs
    items: list[tuple[str, str, bool, Dataset | BatchInferenceJob]]  # (kind, ID, ours, item)

    @classmethod
    def of(cls, observed: Observed, project: str) -> _Seen:
        seen = cls({}, {}, {}, {}, {}, set(), [])
        for ds in observed.datasets:
            rid, ours = _rid(ds), is_ours(ds.display_name, project)
            seen.items.append(("dataset", rid, ours, ds))
            seen.add_dataset(rid, ours, ds)
        for job in observed.jobs:
            rid, ours = _rid(job), is_ours(job.display_name, project)
            seen.items.append(("job", rid, ours, job))
            seen.add_job(rid, ours, job)
        return seen

    def add_job(self, rid: str, ours: bool, job: BatchInferenceJob) -> None:
        if job.name:
            self.jobs[rid] = job
        parts = parse_job_id(rid)
        if parts is None:
            return
        self.families.setdefault(parts.base, []).append((parts, job, ours))
        if ours:
            self.ours_by_name.setdefault(parts.name, []).append((parts, job))

    def add_dataset(self, rid: str, ours: bool, ds: Dataset) -> None:
        if not ds.name:
            return
        self.datasets[rid] = ds
        if ours:
            self.ours_ds.setdefault((rid[:-HASH_LEN], len(rid)), []).append(rid)
            self.ours_ds_ids.add(rid)


def _split_owned(
    members: list[tuple[JobIdParts, BatchInferenceJob, bool]],
) -> tuple[tuple[_Member, ...], BatchInferenceJob | None]:
    if len(members) == 1:  # the usual case: one job per declaration
        parts, job, ours = members[0]
        return (((parts, job),), None) if ours else ((), job)
    mine = sorted(((parts, job) for parts, job, ours in members if ours), key=lambda m: m[0])
    foreign = next((job for _, job, ours in members if not ours), None)
    return tuple(mine), foreign


# ---------------------------------------------------------------------------------------------
# Datasets


def _dataset_actions(
    desired: Desired,
    infos: Mapping[str, DatasetFacts],
    ds_ids: Mapping[str, str],
    seen: _Seen,
    project: str,
) -> list[Action]:
    actions = []
    for decl in desired.datasets:
        facts = infos.get(decl.name)
        if facts is None:
            continue
        action = _dataset_action(decl, facts, ds_ids[decl.name], seen, project)
        if action is not None:
            actions.append(action)
    return actions


def _dataset_action(
    decl: DatasetDecl,
    facts: DatasetFacts,
    ds_id: str,
    seen: _Seen,
    project: str,
) -> Action | None:
    resource = Resource("dataset", decl.name, ds_id)
    existing = seen.datasets.get(ds_id)
    details = {"rows": facts.rows, "size": facts.size, "path": decl.path}
    if existing is not None and owner_of(existing.display_name) != project:
        return Action(Kind.CONFLICT, resource, "a dataset with this ID exists and is not ours")
    if existing is not None and existing.state == DATASET_STATE_READY:
        return _moved_dataset(decl, ds_id, resource)
    spec = DatasetSpec(
        dataset_id=ds_id, name=decl.name, files=decl.files, rows=facts.rows, size=facts.size,
        display_name=marked_display_name(decl.name, project), format=decl.format,
    )  # fmt: skip
    if existing is not None:
        reason = f"stuck in {existing.state or 'an unknown state'}: upload again"
        return Action(Kind.CREATE_DATASET, resource, reason, details, dataset=spec)
    reason = _dataset_reason(ds_id, seen)
    return Action(Kind.CREATE_DATASET, resource, reason, details, dataset=spec)


def _moved_dataset(decl: DatasetDecl, ds_id: str, resource: Resource) -> Action | None:
    """A dataset adopted under its old name's ID (``declared_dataset_ids``), or None."""
    old = _ds_name(ds_id)
    if old == id_name(decl.name):
        return None
    return Action(Kind.MOVED, resource, f"renamed from {old}, no re-upload", {"from": old})


def _dataset_reason(ds_id: str, seen: _Seen) -> str:
    older = sorted(seen.ours_ds.get((ds_id[:-HASH_LEN], len(ds_id)), []))
    return f"content changed (was {older[-1]})" if older else "new dataset"


# ---------------------------------------------------------------------------------------------
# Jobs


@dataclass(frozen=True)
class _Ctx:
    desired: Desired
    project: str
    options: PlanOptions
    seen: _Seen
    creating_ds: frozenset[str]  # datasets this plan creates (jobs reading them wait for READY)


def _job_actions(view: JobView, ctx: _Ctx) -> list[Action]:
    if view.foreign is not None and not view.family:
        resource = Resource("job", view.decl.name, view.base_id)
        return [Action(Kind.CONFLICT, resource, "a job with this ID exists and is not ours")]
    latest = view.latest
    if latest is None:
        return _create(view, ctx)
    if view.renamed_from is not None:
        return [_moved_job(view), *_family_actions(view, latest, ctx)]
    return _family_actions(view, latest, ctx)


def _moved_job(view: JobView) -> Action:
    old = view.renamed_from
    resource = Resource("job", view.decl.name, view.base_id)
    return Action(Kind.MOVED, resource, f"renamed from {old}, no re-run", {"from": old})


def _family_actions(view: JobView, latest: _Member, ctx: _Ctx) -> list[Action]:
    parts, job = latest
    state = job.state or ""
    if state == JOB_STATE_COMPLETED:  # the common case of a big project: often nothing to do
        return _download(view, ctx, partial=False)
    resource = Resource("job", view.decl.name, _rid(job))
    if state in (JOB_STATE_FAILED, JOB_STATE_CANCELLED):
        return _failed(view, parts, job, resource, ctx)
    if state == JOB_STATE_EXPIRED:
        return _expired(view, parts, job, resource, ctx)
    reason = "being deleted" if state in GONE_JOB_STATES else "in progress"
    return [Action(Kind.WAIT, resource, reason, _progress(job))]


def _progress(job: BatchInferenceJob) -> dict[str, Any]:
    p = job.job_progress
    details: dict[str, Any] = {"state": job.state or "JOB_STATE_UNSPECIFIED"}
    if p is not None:
        details.update(
            percent=p.percent or 0, total=p.total_input_requests or 0,
            succeeded=p.successfully_processed_requests or 0, failed=p.failed_requests or 0,
        )  # fmt: skip
    return details


def _job_spec(view: JobView, job: str, project: str, *, continued_from: str | None) -> JobSpec:
    decl = view.decl
    return JobSpec(
        job_id=job, name=decl.name, model=decl.model, input_dataset_id=view.input_dataset_id,
        inference_parameters=wire_parameters(decl.inference_parameters),
        precision=decl.precision, output_dataset_id=output_dataset_id(job),
        display_name=marked_display_name(decl.display_name or decl.name, project),
        continued_from=continued_from,
    )  # fmt: skip


def _create(view: JobView, ctx: _Ctx) -> list[Action]:
    missing = _missing_input(view, ctx)
    resource = Resource("job", view.decl.name, view.base_id)
    if missing:
        return [Action(Kind.FAILED, resource, missing)]
    spec = _job_spec(view, view.base_id, ctx.project, continued_from=None)
    after = view.input_dataset_id if view.input_dataset_id in ctx.creating_ds else None
    details: dict[str, Any] = {"model": view.decl.model, "input": view.input_dataset_id}
    old = _replaced(view, ctx, spec)
    if old is None:
        return [Action(Kind.CREATE_JOB, resource, "new job", details, job=spec, after=after)]
    reason = "spec changed: " + (_spec_diff(old, spec) or "job ID changed")
    details["replaces"] = _rid(old)
    running = _older_running(view, ctx)
    if running:
        details["oldJobKeepsRunning"] = True
        if len(running) == 1:
            reason += f"; the old job {running[0]} keeps running and is billed unless pruned"
        else:
            reason += (f"; the old jobs {', '.join(running)} keep running and are billed "
                       "unless pruned")  # fmt: skip
    return [Action(Kind.REPLACE_JOB, resource, reason, details, job=spec, after=after)]


def _older_running(view: JobView, ctx: _Ctx) -> list[str]:
    """Jobs of older specs of this declaration still running, whichever one is replaced."""
    return sorted(_rid(job) for job in _older_specs(view, ctx)
                  if (job.state or "") not in _FINISHED)  # fmt: skip


def _older_specs(view: JobView, ctx: _Ctx) -> list[BatchInferenceJob]:
    """Our jobs of this declaration's name (and of its old name after a `moved` rename) under
    another base ID: the jobs of its older specs."""
    name = view.base_id.rsplit("-", 1)[0]
    old = ctx.desired.moved_from("BatchInferenceJob", view.decl.name)  # renamed and changed
    members = [*ctx.seen.ours_by_name.get(name, []),
               *(ctx.seen.ours_by_name.get(id_name(old), []) if old else [])]  # fmt: skip
    return [job for parts, job in members if parts.base != view.base_id]


_FINISHED = (
    frozenset({JOB_STATE_COMPLETED, JOB_STATE_FAILED, JOB_STATE_CANCELLED, JOB_STATE_EXPIRED})
    | GONE_JOB_STATES
)


def _missing_input(view: JobView, ctx: _Ctx) -> str | None:
    if view.input_dataset_id in ctx.creating_ds or view.input_dataset_id in ctx.seen.datasets:
        return None
    if view.decl.input_dataset:
        return f"input dataset {view.decl.input_dataset} is not available"
    return f"input dataset {view.input_dataset_id} does not exist"


def _replaced(view: JobView, ctx: _Ctx, spec: JobSpec) -> BatchInferenceJob | None:
    """The job of an older spec of this declaration (same name, other base ID) that the manifest
    matches most closely: the fewest differences in model, input and parameters, then the newest.
    After a revert (A -> B -> A') the plan compares A' with A, not with B, so a dataset-only change
    reads as one; the newest job of the name would list B's parameters as changes."""
    candidates = [
        (-len(_changes(job, spec)), job.create_time or "", _rid(job), job)
        for job in _older_specs(view, ctx)
    ]
    return max(candidates, key=lambda c: c[:3])[3] if candidates else None


def _spec_diff(old: BatchInferenceJob, new: JobSpec) -> str:
    return ", ".join(_changes(old, new))


def _changes(old: BatchInferenceJob, new: JobSpec) -> list[str]:
    changes = []
    if (old.model or "") != new.model:
        changes.append(f"model {old.model} -> {new.model}")
    if resource_id(old.input_dataset_id or "") != new.input_dataset_id:
        changes.append(f"input {resource_id(old.input_dataset_id or '')} -> {new.input_dataset_id}")
    old_params = old.inference_parameters.to_wire() if old.inference_parameters else {}
    for key in sorted(set(new.inference_parameters) | set(old_params)):
        before, after = old_params.get(key), new.inference_parameters.get(key)
        if after is not None and before != after:
            changes.append(f"inferenceParameters.{key} {_show(before)} -> {_show(after)}")
    if new.precision and (old.precision or None) != new.precision:
        changes.append(f"precision {_show(old.precision)} -> {new.precision}")
    return changes


def _show(value: Any) -> str:
    return "(unset)" if value is None else str(value)


def _download(view: JobView, ctx: _Ctx, *, partial: bool) -> list[Action]:
    if not ctx.options.download:
        return []
    latest = view.latest
    assert latest is not None  # callers come from a non-empty family
    if view.results_current:
        return []
    last_id = _rid(latest[1])
    reason = _download_reason(view.result, partial=partial)
    decl_ds = ctx.desired.dataset(view.decl.input_dataset) if view.decl.input_dataset else None
    input_files = decl_ds.files if decl_ds is not None else ()
    spec = DownloadSpec(
        job_name=view.decl.name, job_ids=view.chain_ids,
        output_dataset_ids=tuple(output_dataset_id(j) for j in view.chain_ids),
        input_dataset=view.decl.input_dataset, input_files=input_files,
        output_path=view.decl.output_path,
        output_display=view.decl.output_display, partial=partial,
        response_schema=view.decl.response_schema, table=view.decl.table,
    )  # fmt: skip
    resource = Resource("job", view.decl.name, last_id)
    details = {"path": view.decl.output_display, "lineage": len(view.chain_ids)}
    return [Action(Kind.DOWNLOAD, resource, reason, details, download=spec)]


def _download_reason(result: LocalResult | None, *, partial: bool) -> str:
    what = "partial results" if partial else "results"
    if result is not None and result.record is None and result.present:
        return f"record missing: {what} are on disk but not recorded (downloaded again to verify)"
    if result is None or result.record is None:
        return f"{what} not on disk"
    if not result.verified:
        return f"{what} on disk do not match their record (edited, truncated or deleted)"
    return f"{what} on disk are from an older job"


def _failed(
    view: JobView, parts: JobIdParts, job: BatchInferenceJob, resource: Resource, ctx: _Ctx
) -> list[Action]:
    message = (job.status.message if job.status else "") or "no message"
    details = {"state": job.state, "message": message, "retries": parts.attempt,
               "maxRetries": view.decl.max_retries}  # fmt: skip
    reason = f"{_short(job.state)}: {message}"
    if not ctx.options.retry_failed:
        return [Action(Kind.FAILED, resource, reason, details)]
    permanent = permanent_failure(job)
    if permanent or parts.attempt >= view.decl.max_retries:
        why = permanent or f"all {view.decl.max_retries} retries used (maxRetries)"
        return [Action(Kind.FAILED, resource, f"{reason}; not retried: {why}", details)]
    new_id = attempt_id(view.base_id, parts.attempt + 1)
    spec = _job_spec(view, new_id, ctx.project, continued_from=None)
    reason = f"retry after {_short(job.state)} (attempt {parts.attempt + 2}): {message}"
    new_resource = Resource("job", view.decl.name, new_id)
    return [Action(Kind.RETRY_JOB, new_resource, reason, details, job=spec)]


# google.rpc codes that say the request itself is wrong: the same job would fail the same way.
PERMANENT_CODES = frozenset(
    {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "OUT_OF_RANGE", "PERMISSION_DENIED",
     "UNAUTHENTICATED", "UNIMPLEMENTED", "ALREADY_EXISTS"}
)  # fmt: skip
# Messages that name a permanent cause even under another code (an unknown model, a bad dataset).
PERMANENT_WORDS = ("syntax error", "validation failed", "invalid dataset", "model not found",
                   "unknown model", "does not exist", "not supported")  # fmt: skip


def permanent_failure(job: BatchInferenceJob) -> str | None:
    """Why retrying ``job`` cannot help (its input or model is wrong), or None when it may: the
    server's status code is one of PERMANENT_CODES, or its message names such a cause. A
    cancelled job is never permanent: someone stopped it."""
    if (job.state or "") != JOB_STATE_FAILED or job.status is None:
        return None
    code, message = job.status.code or "", (job.status.message or "").lower()
    if code in PERMANENT_CODES:
        return f"the failure is permanent ({code})"
    word = next((w for w in PERMANENT_WORDS if w in message), None)
    return f"the failure is permanent ({word})" if word else None


def _expired(
    view: JobView, parts: JobIdParts, job: BatchInferenceJob, resource: Resource, ctx: _Ctx
) -> list[Action]:
    decl = view.decl
    progress = job.job_progress
    total = progress.total_input_requests or 0 if progress else 0
    done = progress.successfully_processed_requests or 0 if progress else 0
    details: dict[str, Any] = {"rowsLeft": max(total - done, 0), "maxResumes": decl.max_resumes}
    if progress is not None and progress.total_input_requests is not None and done >= total:
        # Expired after its last row (while writing results): a continuation would have no rows
        # to run. The lineage's results are whole; download them as for a completed job.
        return _download(view, ctx, partial=False)
    if decl.on_expired == "resume" and parts.resume < decl.max_resumes:
        new_id = continuation_id(attempt_id(view.base_id, parts.attempt), parts.resume + 1)
        spec = _job_spec(view, new_id, ctx.project, continued_from=_rid(job))
        details["attempt"] = parts.resume + 1
        reason = f"expired: resume {parts.resume + 1} of {decl.max_resumes}"
        reason += f", {details['rowsLeft']} rows left" if progress else ""
        return [Action(Kind.RESUME_JOB, Resource("job", decl.name, new_id), reason, details,
                       job=spec)]  # fmt: skip
    why = "onExpired: stop" if decl.on_expired == "stop" else f"all {decl.max_resumes} resumes used"
    report = Action(Kind.EXPIRED, resource, f"expired, {why}; partial results only", details)
    return [report, *_download(view, ctx, partial=True)]


def _short(state: str | None) -> str:
    return (state or "").removeprefix("JOB_STATE_").lower() or "unknown"


# ---------------------------------------------------------------------------------------------
# Pruning


def _prune_actions(views: list[JobView], referenced: set[str], ctx: _Ctx) -> list[Action]:
    keep_bases = {v.base_id for v in views}
    keep_ds = set(referenced)
    scope = ctx.options.prune_scope
    actions = []
    for rid, job in ctx.seen.jobs.items():
        parts = parse_job_id(rid)
        if not is_ours(job.display_name, ctx.project) or (job.state or "") in GONE_JOB_STATES:
            continue
        if parts is not None and parts.base in keep_bases:
            keep_ds.add(output_dataset_id(rid))
            continue
        if scope is None or (parts is not None and parts.name in scope):
            actions.append(_prune_job(rid, job, parts))
    for rid, ds in ctx.seen.datasets.items():
        if not is_ours(ds.display_name, ctx.project) or rid in keep_ds:
            continue
        if scope is None or _ds_name(rid) in scope:
            actions.append(Action(Kind.PRUNE_DATASET, Resource("dataset", _ds_name(rid), rid),
                                  "not declared by any manifest"))  # fmt: skip
    return actions


def _prune_job(rid: str, job: BatchInferenceJob, parts: JobIdParts | None) -> Action:
    reason = "not declared by any manifest"
    if (job.state or "") not in _FINISHED:
        reason += "; still running: deleting it stops it"
    details: dict[str, object] = {"state": job.state}
    # The output dataset batchops named for this job (<job>-out) goes with it; one the service
    # named, or that another job writes, is not ours to delete.
    output = resource_id(job.output_dataset_id or "")
    if output == output_dataset_id(rid):
        reason += f"; its output dataset {output} too"
        details["outputDataset"] = output
    name = parts.name if parts else rid
    return Action(Kind.PRUNE_JOB, Resource("job", name, rid), reason, details)


def _ds_name(rid: str) -> str:
    head, _, tail = rid.rpartition("-")
    return head if head and len(tail) == HASH_LEN else rid


# ---------------------------------------------------------------------------------------------
# The plan


def _fingerprint(seen: _Seen, wanted: set[str]) -> str:
    """A hash over the names, states and update times of the observed resources that matter."""
    lines = [
        f"{kind}\0{rid}\0{item.state}\0{item.update_time}"
        for kind, rid, ours, item in seen.items
        if ours or rid in wanted
    ]
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def check_prune(desired: Desired, options: PlanOptions) -> None:
    """Pruning with nothing declared would delete everything ours: only with --allow-empty."""
    if options.prune and not (desired.datasets or desired.jobs) and not options.allow_empty:
        raise ConfigError("refusing to prune: no manifest declares anything (pass --allow-empty)")


def make_plan(
    desired: Desired,
    infos: Mapping[str, DatasetFacts],
    observed: Observed,
    local: Mapping[str, LocalResult],
    options: PlanOptions,
    *,
    project: str,
) -> Plan:
    """Compare desired with observed and return what to do, and why. Pure."""
    check_prune(desired, options)
    seen = _Seen.of(observed, project)
    ds_ids = declared_dataset_ids(desired, infos, project, seen)
    ds_actions = _dataset_actions(desired, infos, ds_ids, seen, project)
    creating = frozenset(a.resource.remote_id for a in ds_actions if a.kind is Kind.CREATE_DATASET)
    ctx = _Ctx(desired, project, options, seen, creating)
    views = _views(desired, ds_ids, seen, local, project)
    actions = ds_actions + [a for v in views for a in _job_actions(v, ctx)]
    referenced = set(ds_ids.values()) | {v.input_dataset_id for v in views}
    prunes = _prune_actions(views, referenced, ctx)
    if options.prune:
        actions += prunes
    return Plan(
        actions=sort_actions(actions), fingerprint=_fingerprint(seen, referenced),
        project=project, options=options,
        job_states=tuple(sorted((v.decl.name, v.state) for v in views)),
        orphan_jobs=0 if options.prune else sum(a.kind is Kind.PRUNE_JOB for a in prunes),
        declared=tuple((v.decl, _current_record(v)) for v in views),
    )  # fmt: skip


def _current_record(view: JobView) -> ResultRecord | None:
    return view.result.record if view.result is not None and view.results_current else None
