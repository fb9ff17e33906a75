"""The canary: a small job of a sample of the rows runs first; the full job waits for it. Pure.

A job declaring ``spec.canary`` whose rows to send are not yet sent gets a canary job first (its
ID is the job's own with ``-canary`` after the name, over a dataset of the sample, see
``batchops.reuse_rows``). While the canary waits or runs, or after it failed (more failed rows
than ``canary.maxFailedRows``), the full job is not created. The canary's failed rows are those
its provider reports plus the answers that break the job's ``responseFormat`` (checked by
``batchops.reuse_rows`` in the reuse index, where the canary's answers are). Once it passed, the
full job sends the other rows: the canary's answers are reused, no row is paid for twice.
``apply --canary-only`` stops there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from batchops.identity import CANARY_SUFFIX, job_key, marked_display_name, output_dataset_id
from batchops.plan.model import Action, CanaryOutcome, Kind, Resource
from batchops.plan.views import JobView, Seen, base_job_id, derived_id, wire_parameters
from batchops.providers import JobSpec, JobState, RemoteJob

_RUNNING = frozenset({JobState.WAITING, JobState.RUNNING})


@dataclass(frozen=True)
class CanaryState:
    state: str  # absent | running | failed | passed
    base: str  # the canary job's base ID
    input_id: str  # its input: the sample's dataset
    job: RemoteJob | None = None
    key: str = ""  # its remote ID: the base, shortened to fit its provider (identity.job_key)
    # failed rows once it finished: the provider's, and the answers that break responseFormat
    failed: int = 0
    nonconforming: int = 0

    @property
    def gates(self) -> bool:
        """The full job waits (the canary has not passed)."""
        return self.state != "passed"


def canary_name(name: str) -> str:
    return name + CANARY_SUFFIX


def canary_outcome(view: JobView, seen: Seen, project: str) -> CanaryOutcome | None:
    state = canary_state(view, seen, project, full_job_too=True)
    sample = view.rows.canary if view.rows is not None else None
    if state is None or sample is None:
        return None
    return CanaryOutcome(
        view.decl.name, state.state, sample.input.rows, state.failed, sample.answers
    )


def canary_state(
    view: JobView, seen: Seen, project: str, *, full_job_too: bool = False
) -> CanaryState | None:
    """Where the job's canary stands; None when no canary applies (none declared, the full job
    exists already unless ``full_job_too``, or every row is reused)."""
    decl, split = view.decl, view.rows
    sample = split.canary if split is not None else None
    input_id = (
        derived_id(dataclasses.replace(split, derived=sample.input), project)
        if (split is not None and sample is not None)
        else None
    )
    if decl.canary is None or sample is None or input_id is None:
        return None
    if view.family and not full_job_too:
        return None
    canary_decl = dataclasses.replace(decl, name=canary_name(decl.name))
    base = base_job_id(canary_decl, input_id, project)
    key = job_key(base, limit=seen.id_limit(decl.provider))
    mine = sorted(
        ((parts, job) for parts, job, ours in seen.family(base) if ours),
        key=lambda m: (m[0].attempt, m[0].resume),
    )
    if not mine:
        return CanaryState("absent", base, input_id, key=key)
    job = mine[-1][1]
    if job.state in _RUNNING:
        return CanaryState("running", base, input_id, job, key)
    bad = sample.nonconforming if job.state is JobState.FINISHED else 0
    failed = (job.rows.failed if job.rows is not None else 0) + bad
    state = (
        "passed"
        if job.state is JobState.FINISHED and failed <= decl.canary.max_failed_rows
        else "failed"
    )
    return CanaryState(state, base, input_id, job, key, failed, bad)


def canary_actions(
    view: JobView, state: CanaryState, project: str, after: str | None
) -> list[Action]:
    """The canary's step while it gates the full job."""
    decl = view.decl
    assert decl.canary is not None and view.rows is not None and view.rows.canary is not None
    sample = view.rows.canary
    limit = decl.canary.max_failed_rows
    details: dict[str, Any] = {
        "canary": True,
        "rowsToSend": sample.input.rows,
        "canaryOf": sample.of,
        "maxFailedRows": limit,
    }
    resource = Resource("job", decl.name, state.key)
    if state.state == "absent":
        spec = _canary_spec(view, state, project)
        reason = f"canary: {sample.input.rows:,} of {sample.of:,} rows to send run first"
        return [Action(Kind.CREATE_JOB, resource, reason, details, job=spec, after=after)]
    job = state.job
    assert job is not None
    if state.state == "running":
        return [Action(Kind.WAIT, resource, "canary in progress; the full job waits", details)]
    failed, bad = state.failed, state.nonconforming
    details.update(state=job.raw_state, failedRows=failed, answers=dict(sample.answers))
    if bad:
        details.update(nonconformingRows=bad, responseFormat=sample.violation)
    if job.state is JobState.FINISHED:
        reason = (
            f"canary failed: {failed:,} of {sample.input.rows:,} rows failed "
            f"(canary.maxFailedRows {limit})"
        )
        if bad:
            reason += (
                f"; {bad:,} answer{'' if bad == 1 else 's'} did not match responseFormat "
                f"(first: {sample.violation})"
            )
    else:
        reason = f"canary {job.raw_state.lower()}: {job.message or 'no message'}"
    reason += "; the full job is not sent"
    return [Action(Kind.FAILED, resource, reason, details)]


def _canary_spec(view: JobView, state: CanaryState, project: str) -> JobSpec:
    decl = view.decl
    name = canary_name(decl.name)
    return JobSpec(
        job_id=state.key,
        name=name,
        model=decl.model,
        input_dataset_id=state.input_id,
        inference_parameters=wire_parameters(decl.inference_parameters),
        precision=decl.precision,
        output_dataset_id=output_dataset_id(state.key),
        display_name=marked_display_name(name, project),
        continued_from=None,
        provider=decl.provider,
    )
