"""The planner's prune actions: owned jobs and datasets no manifest declares (``--prune``). Pure."""

from __future__ import annotations

from batchops.identity import JobIdParts, output_dataset_id, parse_job_id
from batchops.plan.datasets import ds_name
from batchops.plan.jobs import Ctx
from batchops.plan.model import Action, Kind, Resource
from batchops.plan.views import JobView
from batchops.providers import DONE_STATES, JobState, RemoteJob


def prune_actions(views: list[JobView], referenced: set[str], ctx: Ctx) -> list[Action]:
    keep_bases = {v.base_id for v in views}
    keep_ds = set(referenced)
    scope = ctx.options.prune_scope
    actions = []
    for rid, job in ctx.seen.jobs.items():
        parts = parse_job_id(rid)
        if job.owner != ctx.project or job.state is JobState.DELETING:
            continue
        if parts is not None and parts.base in keep_bases:
            keep_ds.add(output_dataset_id(rid))
            continue
        if scope is None or (parts is not None and parts.name in scope):
            actions.append(_prune_job(rid, job, parts))
    for rid, ds in ctx.seen.datasets.items():
        if ds.owner != ctx.project or rid in keep_ds:
            continue
        if scope is None or ds_name(rid) in scope:
            actions.append(Action(Kind.PRUNE_DATASET, Resource("dataset", ds_name(rid), rid),
                                  "not declared by any manifest"))  # fmt: skip
    return actions


def _prune_job(rid: str, job: RemoteJob, parts: JobIdParts | None) -> Action:
    reason = "not declared by any manifest"
    if job.state not in DONE_STATES:
        reason += "; still running: deleting it stops it"
    details: dict[str, object] = {"state": job.raw_state}
    # The output dataset batchops named for this job (<job>-out) goes with it; one the service
    # named, or that another job writes, is not ours to delete.
    output = job.output_id or ""
    if output == output_dataset_id(rid):
        reason += f"; its output dataset {output} too"
        details["outputDataset"] = output
    name = parts.name if parts else rid
    return Action(Kind.PRUNE_JOB, Resource("job", name, rid), reason, details)
