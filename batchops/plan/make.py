"""``make_plan``: (desired, dataset facts, observed, local results, options) -> Plan. Pure.

``batchops.reconcile`` calls it once per pass. A plan is data: a sorted tuple of Actions (so the
plan does not depend on the order of its inputs) plus a fingerprint of what was observed, so a
saved plan can be refused once the world has moved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from batchops.errors import ConfigError
from batchops.manifest.desired import Desired
from batchops.plan.canary import canary_outcome, canary_state
from batchops.plan.datasets import (
    canary_dataset_actions,
    dataset_actions,
    derived_actions,
    retry_actions,
)
from batchops.plan.graph import gates, stage_rows, wait_actions
from batchops.plan.jobs import Ctx, job_actions
from batchops.plan.model import (
    Action,
    CanaryOutcome,
    DatasetFacts,
    Kind,
    Observed,
    Plan,
    PlanOptions,
    sort_actions,
)
from batchops.plan.prune import prune_actions, superseded
from batchops.plan.rows import FailedRows, RowSplit
from batchops.plan.views import JobView, Seen, declared_dataset_ids, views_of
from batchops.results import LocalResult, ResultRecord


def _fingerprint(seen: Seen, wanted: set[str]) -> str:
    """A hash over the names, states and update times of the observed resources that matter."""
    lines = [
        f"{kind}\0{rid}\0{item.raw_state}\0{item.updated}"
        for kind, rid, ours, item in seen.items
        if ours or rid in wanted
    ]
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def check_prune(desired: Desired, options: PlanOptions) -> None:
    """Pruning with nothing declared would delete everything ours: only with --allow-empty."""
    if options.prune and not (desired.datasets or desired.jobs) and not options.allow_empty:
        raise ConfigError("refusing to prune: no manifest declares anything (pass --allow-empty)")


def _read(
    actions: list[Action],
    views: list[JobView],
    ds_ids: Mapping[str, str],
    seen: Seen,
    project: str,
) -> list[Action]:
    """Dataset creations, less those of datasets whose every job reads reused answers and a
    dataset of its new rows instead, or waits for its canary (uploading the whole dataset would
    be for nothing)."""
    readers = {v.decl.input_dataset for v in views if v.decl.input_dataset}
    whole = {
        v.decl.input_dataset
        for v in views
        if v.decl.input_dataset
        and v.input_dataset_id == ds_ids.get(v.decl.input_dataset)
        and (v.family or not v.all_reused)
        and not _gated(v, seen, project)
    }
    unread = readers - whole
    return [a for a in actions if not (a.kind is Kind.CREATE_DATASET and a.resource.name in unread)]


def _gated(view: JobView, seen: Seen, project: str) -> bool:
    canary = canary_state(view, seen, project)
    return canary is not None and canary.gates


def _canary_steps(actions: list[Action]) -> list[Action]:
    """``apply --canary-only``: the canaries' jobs and datasets, nothing of the full spend."""
    return [a for a in actions if a.details.get("canary") or a.details.get("canaryFor")]


def make_plan(
    desired: Desired,
    infos: Mapping[str, DatasetFacts],
    observed: Observed,
    local: Mapping[str, LocalResult],
    options: PlanOptions,
    *,
    project: str,
    rows: Mapping[str, RowSplit] | None = None,
    failed_rows: Mapping[str, FailedRows] | None = None,
) -> Plan:
    """Compare desired with observed and return what to do, and why. Pure.

    ``rows``: each reusing job's split (``batchops.reuse_rows``); such a job sends only its new
    rows, from a derived dataset created here. ``failed_rows``: each job's classified failed rows
    (``batchops.row_retries``); the transient ones are sent again, ``spec.rowRetries`` times at
    most."""
    failed = failed_rows or {}
    check_prune(desired, options)
    seen = Seen.of(observed, project)
    ds_ids = declared_dataset_ids(desired, infos, project, seen)
    every = views_of(desired, ds_ids, seen, local, project, rows)
    gated = gates(every, desired.waiting, failed)
    views = [v for v in every if v.decl.name not in gated] if gated else every
    ds_actions = _read(
        dataset_actions(desired, infos, ds_ids, seen, project), views, ds_ids, seen, project
    )
    if gated:  # a dataset only waiting stages read is not uploaded yet
        ds_actions = _unwaited(ds_actions, views, every)
    ds_actions += derived_actions(views, seen, project)
    ds_actions += canary_dataset_actions(views, seen, project)
    ds_actions += retry_actions(views, failed, seen, project)
    creating = frozenset(a.resource.remote_id for a in ds_actions if a.kind is Kind.CREATE_DATASET)
    ctx = Ctx(
        desired,
        project,
        options,
        seen,
        creating,
        {name: facts.rows for name, facts in infos.items()},
        failed,
    )
    actions = ds_actions + [a for v in views for a in job_actions(v, ctx)]
    actions += wait_actions(every, gated)
    referenced = set(ds_ids.values()) | {v.input_dataset_id for v in every}
    prunes = prune_actions(every, referenced, ctx, frozenset(gated))
    if options.prune:
        actions += prunes
    if options.canary_only:
        actions = _canary_steps(actions)
    canaries = tuple(c for v in views if (c := canary_outcome(v, seen, project)) is not None)
    return Plan(
        actions=sort_actions(actions),
        fingerprint=_fingerprint(seen, referenced),
        project=project,
        options=options,
        job_states=tuple(sorted((v.decl.name, _state(v, canaries)) for v in every)),
        orphan_jobs=0
        if options.prune
        else sum(a.kind is Kind.PRUNE_JOB and not superseded(a) for a in prunes),
        superseded_jobs=0
        if options.prune
        else sum(a.kind is Kind.PRUNE_JOB and superseded(a) for a in prunes),
        canaries=canaries,
        declared=tuple((v.decl, _current_record(v)) for v in every),
        stages=stage_rows(every, gated, failed),
    )


def _unwaited(actions: list[Action], ready: list[JobView], every: list[JobView]) -> list[Action]:
    read = {v.decl.input_dataset for v in ready}
    waiting = {v.decl.input_dataset for v in every} - read
    return [
        a for a in actions if not (a.kind is Kind.CREATE_DATASET and a.resource.name in waiting)
    ]


def _current_record(view: JobView) -> ResultRecord | None:
    return view.result.record if view.result is not None and view.results_current else None


def _state(view: JobView, canaries: tuple[CanaryOutcome, ...]) -> str:
    """A declared job's state as apply's last line counts it: its latest job's, or, with no job
    of its own, REUSED (every row answered before) or its canary's (``canary passed``)."""
    if view.latest is not None:
        return view.state
    if view.all_reused:
        return "REUSED"
    canary = next((c for c in canaries if c.job == view.decl.name), None)
    return (
        f"canary {canary.state}" if canary is not None and canary.state != "absent" else view.state
    )
