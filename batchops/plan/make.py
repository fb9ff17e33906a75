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
from batchops.plan.datasets import dataset_actions
from batchops.plan.jobs import Ctx, job_actions
from batchops.plan.model import DatasetFacts, Kind, Observed, Plan, PlanOptions, sort_actions
from batchops.plan.prune import prune_actions
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
    seen = Seen.of(observed, project)
    ds_ids = declared_dataset_ids(desired, infos, project, seen)
    ds_actions = dataset_actions(desired, infos, ds_ids, seen, project)
    creating = frozenset(a.resource.remote_id for a in ds_actions if a.kind is Kind.CREATE_DATASET)
    ctx = Ctx(desired, project, options, seen, creating)
    views = views_of(desired, ds_ids, seen, local, project)
    actions = ds_actions + [a for v in views for a in job_actions(v, ctx)]
    referenced = set(ds_ids.values()) | {v.input_dataset_id for v in views}
    prunes = prune_actions(views, referenced, ctx)
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
