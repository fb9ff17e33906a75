"""The planner's prune actions: owned jobs and datasets no manifest declares (``--prune``). Pure."""

from __future__ import annotations

from batchops.identity import (
    HASH_LEN,
    NAME_HASH_LEN,
    JobIdParts,
    name_matches,
    output_dataset_id,
    parse_job_id,
)
from batchops.plan.canary import canary_name, canary_state
from batchops.plan.datasets import ds_name
from batchops.plan.jobs import Ctx
from batchops.plan.model import Action, Kind, Resource
from batchops.plan.views import JobView
from batchops.providers import DONE_STATES, JobState, RemoteJob


def prune_actions(
    views: list[JobView], referenced: set[str], ctx: Ctx, waiting: frozenset[str] = frozenset()
) -> list[Action]:
    """``waiting``: pipeline stages waiting on their upstream (``batchops.plan.graph``): what
    they will run is not known yet, so their jobs and input datasets are kept until it is.

    Also kept: the jobs whose answers a declared job reuses (deleting one would make a fresh
    checkout, whose reuse index is rebuilt from the provider, pay for those answers again) and
    each declared job's current canary (deleting it would run, and bill, the canary again)."""
    keep_bases = {v.base_id for v in views}
    keep_bases |= {
        state.base
        for v in views
        if v.decl.canary is not None
        and (state := canary_state(v, ctx.seen, ctx.project, full_job_too=True)) is not None
    }
    sources = {job for v in views if v.rows is not None for job in v.rows.sources}
    keep_digests: dict[str, list[str]] = {}  # for shortened IDs (identity.job_key)
    for base in keep_bases:
        keep_digests.setdefault(base[-HASH_LEN:], []).append(base)
    declared = {v.decl.name for v in views}
    declared |= {old for n in declared if (old := ctx.desired.moved_from(_JOB, n)) is not None}
    declared |= {canary_name(n) for n in declared}  # a canary belongs to its job
    keep_ds = set(referenced)
    scope = ctx.options.prune_scope
    actions = []
    for rid, job in ctx.seen.jobs.items():
        parts = parse_job_id(rid)
        if job.owner != ctx.project or job.state is JobState.DELETING:
            continue
        kept = parts is not None and (
            parts.base in keep_bases
            or parts.name in waiting
            or any(parts.of_base(b) for b in keep_digests.get(parts.digest, ()))
        )
        if kept or rid in sources:
            keep_ds.add(output_dataset_id(rid))
            if rid in sources or (parts is not None and parts.name in waiting):
                keep_ds.add(job.input_id)  # a source is read again from it; a stage reads it
            continue
        if scope is None or (parts is not None and _named(parts.name, scope)):
            actions.append(_prune_job(rid, job, parts, declared))
    for rid, ds in ctx.seen.datasets.items():
        if ds.owner != ctx.project or rid in keep_ds:
            continue
        if scope is None or ds_name(rid) in scope:
            actions.append(
                Action(
                    Kind.PRUNE_DATASET,
                    Resource("dataset", ds_name(rid), rid),
                    "not declared by any manifest",
                )
            )
    return actions


_JOB = "BatchInferenceJob"


def superseded(action: Action) -> bool:
    """A prune of an older spec of a job still declared (replaced by it), not of an undeclared
    job."""
    return bool(action.details.get("superseded"))


def _named(part: str, names: frozenset[str] | set[str]) -> bool:
    """Whether an ID's name part is one of ``names``' (itself, or shortened: identity.job_key)."""
    if part in names:
        return True
    head = part[: -NAME_HASH_LEN - 1]
    return bool(head) and any(n.startswith(head) and name_matches(part, n) for n in names)


def _prune_job(rid: str, job: RemoteJob, parts: JobIdParts | None, declared: set[str]) -> Action:
    old_spec = parts is not None and _named(parts.name, declared)
    reason = (
        "superseded: an older spec of a declared job"
        if old_spec
        else "not declared by any manifest"
    )
    if job.state not in DONE_STATES:
        reason += "; still running: deleting it stops it"
    details: dict[str, object] = {"state": job.raw_state}
    if old_spec:
        details["superseded"] = True
    # The output dataset batchops named for this job (<job>-out) goes with it; one the service
    # named, or that another job writes, is not ours to delete.
    output = job.output_id or ""
    if output == output_dataset_id(rid):
        reason += f"; its output dataset {output} too"
        details["outputDataset"] = output
    name = parts.name if parts else rid
    return Action(Kind.PRUNE_JOB, Resource("job", name, rid), reason, details)
