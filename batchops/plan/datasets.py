"""The planner's dataset actions: create (or upload again), adopt after a rename, conflicts.

Pure; ``batchops.plan.make`` calls ``dataset_actions``.
"""

from __future__ import annotations

from collections.abc import Mapping

from batchops.identity import HASH_LEN, dataset_id, id_name, marked_display_name
from batchops.manifest.desired import DatasetDecl, Desired
from batchops.plan.canary import canary_state
from batchops.plan.jobs import row_retry_input
from batchops.plan.model import Action, DatasetFacts, Kind, Resource
from batchops.plan.rows import DerivedInput, FailedRows
from batchops.plan.views import JobView, Seen, derived_id
from batchops.providers import DEFAULT_PROVIDER, DatasetSpec


def readers(desired: Desired) -> dict[str, tuple[str, ...]]:
    """Each declared dataset's providers: those of the jobs reading it (``fireworks`` when no
    job does), sorted. Datasets are provider-neutral; each provider gets its own copy."""
    by_name: dict[str, set[str]] = {}
    for job in desired.jobs:
        if job.input_dataset:
            by_name.setdefault(job.input_dataset, set()).add(job.provider)
    return {
        d.name: tuple(sorted(by_name.get(d.name) or {DEFAULT_PROVIDER})) for d in desired.datasets
    }


def dataset_actions(
    desired: Desired,
    infos: Mapping[str, DatasetFacts],
    ds_ids: Mapping[str, str],
    seen: Seen,
    project: str,
) -> list[Action]:
    actions = []
    wanted_at = readers(desired)
    for decl in desired.datasets:
        facts = infos.get(decl.name)
        if facts is None:
            continue
        ds_id = ds_ids[decl.name]
        missing = tuple(p for p in wanted_at[decl.name] if (p, ds_id) not in seen.ready_at)
        action = _dataset_action(decl, facts, ds_id, seen, project, missing)
        if action is not None:
            actions.append(action)
    return actions


def _dataset_action(
    decl: DatasetDecl,
    facts: DatasetFacts,
    ds_id: str,
    seen: Seen,
    project: str,
    missing: tuple[str, ...],  # the providers that read it and lack it
) -> Action | None:
    resource = Resource("dataset", decl.name, ds_id)
    existing = seen.datasets.get(ds_id)
    details: dict[str, object] = {"rows": facts.rows, "size": facts.size, "path": decl.path}
    if existing is not None and existing.owner != project:
        return Action(Kind.CONFLICT, resource, "a dataset with this ID exists and is not ours")
    if not missing:
        return _moved_dataset(decl, ds_id, resource)
    spec = DatasetSpec(
        dataset_id=ds_id,
        name=decl.name,
        files=decl.files,
        rows=facts.rows,
        size=facts.size,
        display_name=marked_display_name(decl.name, project),
        format=decl.format,
        providers=missing,
    )
    if missing != (DEFAULT_PROVIDER,):
        details["providers"] = list(missing)
    if existing is not None and existing.ready:  # ready on another provider: a copy here
        reason = f"new on {', '.join(missing)}"
        return Action(Kind.CREATE_DATASET, resource, reason, details, dataset=spec)
    if existing is not None:
        reason = f"stuck in {existing.raw_state or 'an unknown state'}: upload again"
        return Action(Kind.CREATE_DATASET, resource, reason, details, dataset=spec)
    reason = _dataset_reason(ds_id, seen)
    return Action(Kind.CREATE_DATASET, resource, reason, details, dataset=spec)


def _moved_dataset(decl: DatasetDecl, ds_id: str, resource: Resource) -> Action | None:
    """A dataset adopted under its old name's ID (``declared_dataset_ids``), or None."""
    old = ds_name(ds_id)
    if old == id_name(decl.name):
        return None
    return Action(Kind.MOVED, resource, f"renamed from {old}, no re-upload", {"from": old})


def _dataset_reason(ds_id: str, seen: Seen) -> str:
    older = sorted(seen.ours_ds.get((ds_id[:-HASH_LEN], len(ds_id)), []))
    return f"content changed (was {older[-1]})" if older else "new dataset"


def ds_name(rid: str) -> str:
    """The manifest name part of a dataset ID we made (the ID itself for other shapes)."""
    head, _, tail = rid.rpartition("-")
    return head if head and len(tail) == HASH_LEN else rid


def derived_actions(views: list[JobView], seen: Seen, project: str) -> list[Action]:
    """A dataset of just the rows to send, for each job that sends some rows and reuses others,
    when its job is still to be created (one created already read it), on its job's provider."""
    wanted: dict[str, tuple[JobView, set[str]]] = {}
    for view in views:
        ds_id = derived_id(view.rows, project)
        if ds_id is None or view.family or (view.decl.provider, ds_id) in seen.ready_at:
            continue
        canary = canary_state(view, seen, project)
        if canary is not None and canary.gates:  # the full job waits for its canary
            continue
        wanted.setdefault(ds_id, (view, set()))[1].add(view.decl.provider)
    return [
        _derived_action(ds_id, view, tuple(sorted(providers)), project)
        for ds_id, (view, providers) in wanted.items()
    ]


def _derived_action(ds_id: str, view: JobView, providers: tuple[str, ...], project: str) -> Action:
    derived = view.rows.derived if view.rows is not None else None
    assert derived is not None  # derived_id() found one
    rows = f"{derived.rows:,} new row{'' if derived.rows == 1 else 's'}"
    reason = f"the {rows} of job {view.decl.name}"
    return _file_action(ds_id, derived, providers, project, reason, {"derivedFor": view.decl.name})


def _file_action(
    ds_id: str,
    rows: DerivedInput,
    providers: tuple[str, ...],
    project: str,
    reason: str,
    role: dict[str, str],
) -> Action:
    """Create the dataset of a file batchops wrote itself (new rows, a retry, a canary)."""
    spec = DatasetSpec(
        dataset_id=ds_id,
        name=rows.dataset,
        files=(rows.path,),
        rows=rows.rows,
        size=rows.size,
        display_name=marked_display_name(rows.dataset, project),
        format=None,
        providers=providers,
    )
    details = {"rows": rows.rows, "size": rows.size, **role}
    resource = Resource("dataset", rows.dataset, ds_id)
    return Action(Kind.CREATE_DATASET, resource, reason, details, dataset=spec)


def retry_actions(
    views: list[JobView], failed: Mapping[str, FailedRows], seen: Seen, project: str
) -> list[Action]:
    """The dataset of each job's rows to send again after transient failures (row retries)."""
    actions: dict[str, Action] = {}
    for view in views:
        retry = row_retry_input(view, failed)
        if retry is None:
            continue
        ds_id = dataset_id(project, retry.dataset, retry.sha256)
        if (view.decl.provider, ds_id) in seen.ready_at or ds_id in actions:
            continue
        reason = f"the {retry.rows:,} rows of job {view.decl.name} to send again"
        role = {"retryFor": view.decl.name}
        actions[ds_id] = _file_action(ds_id, retry, (view.decl.provider,), project, reason, role)
    return list(actions.values())


def canary_dataset_actions(views: list[JobView], seen: Seen, project: str) -> list[Action]:
    """The sample's dataset of each canary still to be created."""
    actions: dict[str, Action] = {}
    for view in views:
        canary = canary_state(view, seen, project)
        sample = view.rows.canary if view.rows is not None else None
        if canary is None or canary.state != "absent" or sample is None:
            continue
        ds_id, provider = canary.input_id, view.decl.provider
        if (provider, ds_id) in seen.ready_at or ds_id in actions:
            continue
        reason = f"the {sample.input.rows:,} rows of job {view.decl.name}'s canary"
        role = {"canaryFor": view.decl.name}
        actions[ds_id] = _file_action(ds_id, sample.input, (provider,), project, reason, role)
    return list(actions.values())
