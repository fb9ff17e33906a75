"""The planner's job actions, by the latest job's neutral state (DESIGN.md section 3). Pure.

create / replace when absent or changed, wait while waiting or running, download when finished,
report or retry when failed or cancelled, resume or report when expired.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from batchops.identity import (
    JobIdParts,
    dataset_id,
    id_name,
    job_key,
    marked_display_name,
    output_dataset_id,
)
from batchops.manifest.desired import Desired
from batchops.plan.attempts import attempt_input, attempts
from batchops.plan.canary import canary_actions, canary_state
from batchops.plan.model import Action, DownloadSpec, Kind, PlanOptions, Resource
from batchops.plan.rows import DerivedInput, FailedRows, job_prefix
from batchops.plan.views import JobView, Member, Seen, wire_parameters
from batchops.providers import DONE_STATES, JobSpec, JobState, RemoteJob
from batchops.results import LocalResult


@dataclass(frozen=True)
class Ctx:
    desired: Desired
    project: str
    options: PlanOptions
    seen: Seen
    creating_ds: frozenset[str]  # datasets this plan creates (jobs reading them wait for READY)
    dataset_rows: Mapping[str, int] = field(default_factory=dict)  # declared dataset -> rows
    failed_rows: Mapping[str, FailedRows] = field(default_factory=dict)  # job name -> failures


def job_actions(view: JobView, ctx: Ctx) -> list[Action]:
    if view.foreign is not None and not view.family:
        resource = Resource("job", view.decl.name, view.base_id)
        return [Action(Kind.CONFLICT, resource, "a job with this ID exists and is not ours")]
    latest = view.latest
    canary = canary_state(view, ctx.seen, ctx.project) if latest is None else None
    if canary is not None and canary.gates:
        after = canary.input_id if canary.input_id in ctx.creating_ds else None
        return canary_actions(view, canary, ctx.project, after)
    if latest is None and view.all_reused:
        return _download(view, ctx, partial=False)
    if latest is None:
        return _create(view, ctx)
    if view.renamed_from is not None:
        return [_moved_job(view), *_family_actions(view, latest, ctx)]
    return _family_actions(view, latest, ctx)


def _moved_job(view: JobView) -> Action:
    old = view.renamed_from
    resource = Resource("job", view.decl.name, view.base_id)
    return Action(Kind.MOVED, resource, f"renamed from {old}, no re-run", {"from": old})


def _family_actions(view: JobView, latest: Member, ctx: Ctx) -> list[Action]:
    duplicates = [_duplicates(view, job) for _, job in view.family if job.duplicates]
    return duplicates + _latest_actions(view, latest, ctx)


def _duplicates(view: JobView, job: RemoteJob) -> Action:
    resource = Resource("job", view.decl.name, job.key)
    reason = (
        f"{len(job.duplicates)} duplicate batch(es) from a concurrent apply: cancel, "
        f"keep the oldest ({job.remote_id})"
    )
    return Action(Kind.CANCEL_DUPLICATE, resource, reason, {"duplicates": list(job.duplicates)})


def _latest_actions(view: JobView, latest: Member, ctx: Ctx) -> list[Action]:
    parts, job = latest
    state = job.state
    if state is JobState.FINISHED:  # the common case of a big project: often nothing to do
        retry = row_retry_input(view, ctx.failed_rows)
        if retry is not None:
            return [_retry_rows(view, retry, ctx)]
        return _download(view, ctx, partial=False)
    resource = Resource("job", view.decl.name, job.key)
    if state is JobState.FAILED or state is JobState.CANCELLED:
        return _failed(view, parts, job, resource, ctx)
    if state is JobState.EXPIRED:
        return _expired(view, parts, job, resource, ctx)
    if state is JobState.INCOMPLETE:  # parts never submitted: the same job submits the rest
        spec = _job_spec(view, job.key, ctx.project, continued_from=job.continued_from)
        reason = f"{job.message}; submitting the rest"
        return [Action(Kind.CREATE_JOB, resource, reason, _progress(job), job=spec)]
    reason = "being deleted" if state is JobState.DELETING else "in progress"
    return [Action(Kind.WAIT, resource, reason, _progress(job))]


def _key(view: JobView, ctx: Ctx, *, attempt: int = 0, resume: int = 0) -> str:
    """The remote ID of one attempt (continuation) of the view's job, within its provider's ID
    length (``identity.job_key``)."""
    limit = ctx.seen.id_limit(view.decl.provider)
    return job_key(view.base_id, attempt=attempt, resume=resume, limit=limit)


def _progress(job: RemoteJob) -> dict[str, Any]:
    rows = job.rows
    details: dict[str, Any] = {"state": job.raw_state}
    if rows is not None:
        details.update(
            percent=rows.percent, total=rows.total, succeeded=rows.succeeded, failed=rows.failed
        )
    return details


def _job_spec(view: JobView, job: str, project: str, *, continued_from: str | None) -> JobSpec:
    decl = view.decl
    return JobSpec(
        job_id=job,
        name=decl.name,
        model=decl.model,
        input_dataset_id=view.input_dataset_id,
        inference_parameters=wire_parameters(decl.inference_parameters),
        precision=decl.precision,
        output_dataset_id=output_dataset_id(job),
        display_name=marked_display_name(decl.display_name or decl.name, project),
        continued_from=continued_from,
        provider=decl.provider,
        input_files=view.input_files,
    )


def _create(view: JobView, ctx: Ctx) -> list[Action]:
    missing = _missing_input(view, ctx)
    key = _key(view, ctx)
    resource = Resource("job", view.decl.name, key)
    if missing:
        return [Action(Kind.FAILED, resource, missing)]
    spec = _job_spec(view, key, ctx.project, continued_from=None)
    after = view.input_dataset_id if view.input_dataset_id in ctx.creating_ds else None
    details: dict[str, Any] = {"model": view.decl.model, "input": view.input_dataset_id}
    rows = view.rows
    if rows is not None:
        details.update(
            rowsToSend=len(rows.send), rowsReused=rows.reused, reusedFrom=dict(rows.reused_from)
        )
    elif (declared := view.decl.input_dataset or "") in ctx.dataset_rows:  # every row is sent
        details["rowsToSend"] = ctx.dataset_rows[declared]
    counted = f": {rows.describe()}" if rows is not None and rows.reused else ""
    canary = canary_state(view, ctx.seen, ctx.project)
    if canary is not None and canary.job is not None and rows is not None and rows.canary:
        failed = canary.failed  # passed: it gated
        counted += f" (canary passed, {failed:,} failed rows)"
        details["canaryPassed"] = {
            "job": canary.job.key,
            "failedRows": failed,
            "answers": dict(rows.canary.answers),
        }
    old = _replaced(view, ctx, spec)
    if old is None:
        return [
            Action(Kind.CREATE_JOB, resource, "new job" + counted, details, job=spec, after=after)
        ]
    reason = "spec changed: " + (_spec_diff(old, spec) or "job ID changed")
    reason += counted.replace(":", ";", 1)
    details["replaces"] = old.key
    running = _older_running(view, ctx)
    if running:
        details["oldJobKeepsRunning"] = True
        if len(running) == 1:
            reason += f"; the old job {running[0]} keeps running and is billed unless pruned"
        else:
            reason += (
                f"; the old jobs {', '.join(running)} keep running and are billed unless pruned"
            )
    return [Action(Kind.REPLACE_JOB, resource, reason, details, job=spec, after=after)]


def _older_running(view: JobView, ctx: Ctx) -> list[str]:
    """Jobs of older specs of this declaration still running, whichever one is replaced."""
    return sorted(job.key for job in _older_specs(view, ctx) if job.state not in DONE_STATES)


def _older_specs(view: JobView, ctx: Ctx) -> list[RemoteJob]:
    """Our jobs of this declaration's name (and of its old name after a `moved` rename) under
    another base ID: the jobs of its older specs."""
    name = view.base_id.rsplit("-", 1)[0]
    old = ctx.desired.moved_from("BatchInferenceJob", view.decl.name)  # renamed and changed
    members = [
        *ctx.seen.ours_named(name),
        *(ctx.seen.ours_named(id_name(old)) if old else []),
    ]
    return [job for parts, job in members if not parts.of_base(view.base_id)]


def _missing_input(view: JobView, ctx: Ctx) -> str | None:
    if view.input_dataset_id in ctx.creating_ds or view.input_dataset_id in ctx.seen.datasets:
        return None
    if view.decl.input_dataset:
        return f"input dataset {view.decl.input_dataset} is not available"
    return f"input dataset {view.input_dataset_id} does not exist"


def _replaced(view: JobView, ctx: Ctx, spec: JobSpec) -> RemoteJob | None:
    """The job of an older spec of this declaration (same name, other base ID) that the manifest
    matches most closely: the fewest differences in model, input and parameters, then the newest.
    After a revert (A -> B -> A') the plan compares A' with A, not with B, so a dataset-only change
    reads as one; the newest job of the name would list B's parameters as changes."""
    candidates = [
        (-len(_changes(job, spec)), job.created, job.key, job) for job in _older_specs(view, ctx)
    ]
    return max(candidates, key=lambda c: c[:3])[3] if candidates else None


def _spec_diff(old: RemoteJob, new: JobSpec) -> str:
    return ", ".join(_changes(old, new))


def _changes(old: RemoteJob, new: JobSpec) -> list[str]:
    changes = []
    if old.model != new.model:
        changes.append(f"model {old.model or None} -> {new.model}")
    if old.input_id != new.input_dataset_id:
        changes.append(f"input {old.input_id} -> {new.input_dataset_id}")
    old_params = old.parameters
    for key in sorted(set(new.inference_parameters) | set(old_params)):
        before, after = old_params.get(key), new.inference_parameters.get(key)
        if after is not None and before != after:
            changes.append(f"inferenceParameters.{key} {_show(before)} -> {_show(after)}")
    if new.precision and (old.precision or None) != new.precision:
        changes.append(f"precision {_show(old.precision)} -> {new.precision}")
    return changes


def _show(value: Any) -> str:
    return "(unset)" if value is None else str(value)


def _download(view: JobView, ctx: Ctx, *, partial: bool, reason: str | None = None) -> list[Action]:
    if not ctx.options.download:
        return []
    latest = view.latest
    table_only = view.results_current
    if table_only:
        reason = _table_reason(view)
        if reason is None:
            return []
    reason = reason or _download_reason(view.result, partial=partial)
    rows = view.rows
    if rows is not None and rows.reused and not table_only:
        reason += f" ({rows.describe()})"
    decl_ds = ctx.desired.dataset(view.decl.input_dataset) if view.decl.input_dataset else None
    input_files = decl_ds.files if decl_ds is not None else ()
    spec = DownloadSpec(
        job_name=view.decl.name,
        job_ids=view.chain_ids or (view.reused_key,),
        output_dataset_ids=tuple(output_dataset_id(j) for j in view.chain_ids),
        input_dataset=view.decl.input_dataset,
        input_files=input_files,
        output_path=view.decl.output_path,
        output_display=view.decl.output_display,
        partial=partial,
        request_prefix=job_prefix(view.decl) if rows is not None else None,
        rows_retry_left=latest is not None
        and view.decl.input_dataset is not None
        and attempts(view.family).row_retries < view.decl.row_retries,
        response_schema=view.decl.response_schema,
        table=view.decl.table,
        table_only=table_only,
        id_column=decl_ds.render.id_column if decl_ds is not None and decl_ds.render else None,
    )
    resource = Resource("job", view.decl.name, latest[1].key if latest else view.base_id)
    details = {"path": view.decl.output_display, "lineage": len(view.chain_ids)}
    return [Action(Kind.DOWNLOAD, resource, reason, details, download=spec)]


def _table_reason(view: JobView) -> str | None:
    """Why current results need their ``output.table`` written again (None: they do not): the
    table asked for is not the one written (another path, format or columns), or it is gone."""
    table, record = view.decl.table, view.result.record if view.result is not None else None
    if table is None or record is None:
        return None
    if record.table is not None and record.table == table.stamp and table.path.is_file():
        return None
    what = "missing" if not table.path.is_file() else "written for another spec.output.table"
    return f"table {table.path.name} {what}: written again from the results on disk (no download)"


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
    view: JobView, parts: JobIdParts, job: RemoteJob, resource: Resource, ctx: Ctx
) -> list[Action]:
    message = job.message or "no message"
    used = attempts(view.family)
    details = {
        "state": job.raw_state,
        "message": message,
        "retries": used.retries,
        "maxRetries": view.decl.max_retries,
    }
    reason = f"{_short(job)}: {message}"
    if not ctx.options.retry_failed:
        return [Action(Kind.FAILED, resource, reason, details)]
    permanent = permanent_failure(job)
    if permanent or used.retries >= view.decl.max_retries:
        why = permanent or f"all {view.decl.max_retries} retries used (maxRetries)"
        return [Action(Kind.FAILED, resource, f"{reason}; not retried: {why}", details)]
    new_id = _key(view, ctx, attempt=used.next)
    spec = _job_spec(view, new_id, ctx.project, continued_from=None)
    given = attempt_input(view.family, parts.attempt)
    if given and given != spec.input_dataset_id:  # a failed row retry: the same rows again
        spec = replace(spec, input_dataset_id=given, input_files=_files_of(view, given, ctx))
    reason = f"retry after {_short(job)} (attempt {used.next + 1}): {message}"
    new_resource = Resource("job", view.decl.name, new_id)
    return [Action(Kind.RETRY_JOB, new_resource, reason, details, job=spec)]


def row_retry_input(view: JobView, failed: Mapping[str, FailedRows]) -> DerivedInput | None:
    """The dataset of the rows to send again after transient failures, when the job's results
    are merged up to its latest job and row retries are left; None otherwise. Bounded: attempt
    k > 0 of a family is row retry k, and there are at most ``spec.rowRetries`` of them."""
    rows = failed.get(view.decl.name)
    latest = view.latest
    if rows is None or rows.retry is None or latest is None or not view.results_current:
        return None
    if rows.job != latest[1].key or attempts(view.family).row_retries >= view.decl.row_retries:
        return None
    return rows.retry


def _files_of(view: JobView, input_id: str, ctx: Ctx) -> tuple[Path, ...]:
    """The local file of a row retry's input (the rows still failing), for providers that upload
    rows per job; none when it is not known here (the provider then says so)."""
    failed = ctx.failed_rows.get(view.decl.name)
    retry = failed.retry if failed is not None else None
    if retry is not None and dataset_id(ctx.project, retry.dataset, retry.sha256) == input_id:
        return (retry.path,)
    return ()


def _retry_rows(view: JobView, retry: DerivedInput, ctx: Ctx) -> Action:
    used = attempts(view.family)
    new_id = _key(view, ctx, attempt=used.next)
    input_id = dataset_id(ctx.project, retry.dataset, retry.sha256)
    spec = replace(
        _job_spec(view, new_id, ctx.project, continued_from=None),
        input_dataset_id=input_id,
        input_files=(retry.path,),
    )
    failed = ctx.failed_rows[view.decl.name]
    n = used.row_retries + 1
    reason = (
        f"{retry.rows:,} row{'s' if retry.rows != 1 else ''} failed for a passing reason: "
        f"send again (row retry {n} of {view.decl.row_retries})"
    )
    if failed.permanent:
        reason += f"; {len(failed.permanent):,} failed for good, not sent"
    details: dict[str, Any] = {
        "rowsToSend": retry.rows,
        "rowRetry": n,
        "input": input_id,
        "permanentRows": len(failed.permanent),
    }
    after = input_id if input_id in ctx.creating_ds else None
    resource = Resource("job", view.decl.name, new_id)
    return Action(Kind.RETRY_JOB, resource, reason, details, job=spec, after=after)


# Error codes that say the request itself is wrong: the same job would fail the same way
# (google.rpc names, as Fireworks reports them).
PERMANENT_CODES = frozenset(
    {
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
        "OUT_OF_RANGE",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "UNIMPLEMENTED",
        "ALREADY_EXISTS",
    }
)
# Messages that name a permanent cause even under another code (an unknown model, a bad dataset).
PERMANENT_WORDS = (
    "syntax error",
    "validation failed",
    "invalid dataset",
    "model not found",
    "unknown model",
    "does not exist",
    "not supported",
)


def permanent_failure(job: RemoteJob) -> str | None:
    """Why retrying ``job`` cannot help (its input or model is wrong), or None when it may: the
    provider's error code is one of PERMANENT_CODES, or its message names such a cause. A
    cancelled job is never permanent: someone stopped it."""
    if job.state is not JobState.FAILED or not (job.code or job.message):
        return None
    code, message = job.code, job.message.lower()
    if code in PERMANENT_CODES:
        return f"the failure is permanent ({code})"
    word = next((w for w in PERMANENT_WORDS if w in message), None)
    return f"the failure is permanent ({word})" if word else None


def _expired(
    view: JobView, parts: JobIdParts, job: RemoteJob, resource: Resource, ctx: Ctx
) -> list[Action]:
    decl = view.decl
    rows = job.rows
    left = max(rows.total - rows.succeeded, 0) if rows is not None else 0
    details: dict[str, Any] = {"rowsLeft": left, "maxResumes": decl.max_resumes}
    if rows is not None and rows.succeeded >= rows.total:
        # Expired after its last row (while writing results): a continuation would have no rows
        # to run. The lineage's results are whole; download them as for a completed job.
        return _download(view, ctx, partial=False)
    if decl.on_expired == "resume" and parts.resume < decl.max_resumes:
        new_id = _key(view, ctx, attempt=parts.attempt, resume=parts.resume + 1)
        spec = _job_spec(view, new_id, ctx.project, continued_from=job.key)
        details["attempt"] = parts.resume + 1
        reason = f"expired: resume {parts.resume + 1} of {decl.max_resumes}"
        reason += f", {details['rowsLeft']} rows left" if rows is not None else ""
        return [
            Action(Kind.RESUME_JOB, Resource("job", decl.name, new_id), reason, details, job=spec)
        ]
    why = "onExpired: stop" if decl.on_expired == "stop" else f"all {decl.max_resumes} resumes used"
    if _salvaged_rows_retried(view, parts, ctx):
        # The rows it never reached are failed rows of a passing reason (EXPIRED) in the merged
        # results: sent again like any transient failure, spec.rowRetries times at most.
        retry = row_retry_input(view, ctx.failed_rows)
        if retry is not None:
            return [_retry_rows(view, retry, ctx)]
        if not view.results_current:
            return _download(
                view,
                ctx,
                partial=True,
                reason=f"expired, {why}; partial results "
                "(the rows it never reached are sent again: rowRetries)",
            )
    report = Action(Kind.EXPIRED, resource, f"expired, {why}; partial results only", details)
    return [report, *_download(view, ctx, partial=True)]


def _salvaged_rows_retried(view: JobView, parts: JobIdParts, ctx: Ctx) -> bool:
    """An expired job whose resumes are used up: its partial results are merged, and the rows
    it never reached are retried as transient failures while row retries are left (a declared
    input dataset tells which rows those are; ``onExpired: stop`` asks for no more runs; with
    ``--no-download`` nothing is merged, so it is reported as before)."""
    decl = view.decl
    return (
        decl.on_expired == "resume"
        and decl.input_dataset is not None
        and attempts(view.family).row_retries < decl.row_retries
        and ctx.options.download
    )


def _short(job: RemoteJob) -> str:
    """The state in a reason: the provider's word, lower case (``failed``, ``cancelled``)."""
    raw = job.raw_state.removeprefix("JOB_STATE_").lower()
    return raw if raw and raw != "unspecified" else job.state.value
