"""Executes a Plan: datasets before the jobs reading them, a bounded thread pool, errors collected.

``batchops.reconcile.run_pass`` calls ``apply_plan``. Each action is idempotent: IDs are
deterministic, so a create that answers 409 is success once the existing resource is confirmed ours
and identical, and an interrupted apply is finished by the next one. One action's error never
aborts the others; all are returned. Progress goes to an injected ``Reporter`` (the CLI draws bars).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from batchops.api import FireworksClient
from batchops.datasets import iter_custom_ids
from batchops.errors import (
    ApiError,
    BatchopsError,
    ConflictError,
    NotFoundError,
    OwnershipError,
)
from batchops.identity import owner_of
from batchops.layout import errors_path
from batchops.plan import Action, DatasetSpec, DownloadSpec, JobSpec, Kind, Plan
from batchops.results import (
    ResultRecord,
    ResultsError,
    check_target,
    merge_lineage,
    os_problem,
    write_atomic,
)
from batchops.scratch import Scratch, sweep_all
from batchops.sources.conform import answer_check
from batchops.sources.join import JobResults, Joined, input_rows
from batchops.sources.writers import chunks
from batchops.wire import (
    DATASET_STATE_READY,
    BatchInferenceJob,
    Dataset,
    InferenceParameters,
    dataset_resource,
    job_resource,
    resource_id,
)

DEFAULT_WORKERS = 8
READY_TIMEOUT = 600.0  # seconds a fresh dataset may take to become READY after its upload
_JOB_KINDS = frozenset({Kind.CREATE_JOB, Kind.REPLACE_JOB, Kind.RETRY_JOB, Kind.RESUME_JOB})


class Reporter(Protocol):
    """What apply tells its caller while it works; the CLI implements it with progress bars."""

    def action_started(self, action: Action) -> None: ...
    def action_finished(self, action: Action, error: BatchopsError | None) -> None: ...
    def transfer_progress(self, action: Action, done_bytes: int, total_bytes: int) -> None: ...


class NullReporter:
    def action_started(self, action: Action) -> None:
        pass

    def action_finished(self, action: Action, error: BatchopsError | None) -> None:
        pass

    def transfer_progress(self, action: Action, done_bytes: int, total_bytes: int) -> None:
        pass


class SkippedError(BatchopsError):
    """An action not run because an action it depends on failed, or because we are stopping."""


@dataclass
class ApplyResult:
    errors: list[BatchopsError] = field(default_factory=list)
    records: dict[str, ResultRecord] = field(default_factory=dict)  # job name -> merged results
    done: list[Action] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass(frozen=True)
class _Env:
    client: FireworksClient
    root: Path
    project: str
    reporter: Reporter
    stop: threading.Event
    ready_timeout: float


def apply_plan(
    plan: Plan,
    *,
    client: FireworksClient,
    root: Path,
    reporter: Reporter | None = None,
    max_workers: int = DEFAULT_WORKERS,
    stop: threading.Event | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> ApplyResult:
    """Run every change in ``plan``; return what was done and every error, never raise one."""
    env = _Env(client, root, plan.project, reporter or NullReporter(), stop or threading.Event(),
               ready_timeout)  # fmt: skip
    result = ApplyResult()
    sweep_all(root)  # a killed run's scratch folders (its lock is free), before making ours
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="apply") as pool:
        datasets = {
            a.resource.remote_id: pool.submit(_run, env, result, a, None)
            for a in plan.actions
            if a.kind is Kind.CREATE_DATASET
        }
        others = [
            pool.submit(_run, env, result, a, datasets.get(a.after or ""))
            for a in plan.actions
            if a.kind in _JOB_KINDS or a.kind is Kind.DOWNLOAD
        ]
        _wait_all([*datasets.values(), *others])
        for kind in (Kind.PRUNE_JOB, Kind.PRUNE_DATASET):  # jobs first: they read the datasets
            _wait_all([pool.submit(_run, env, result, a, None) for a in _of(plan, kind)])
    return result


def _of(plan: Plan, kind: Kind) -> list[Action]:
    return [a for a in plan.actions if a.kind is kind]


def _wait_all(futures: Iterable[Future[bool]]) -> None:
    for future in futures:
        future.result()  # _run never raises; this only waits


def _run(env: _Env, result: ApplyResult, action: Action, after: Future[bool] | None) -> bool:
    """Run one action, report it, record its error. True when it succeeded."""
    error: BatchopsError | None = None
    if after is not None and not after.result():
        error = SkippedError(f"{action.resource.name}: not created, its input dataset failed")
    elif env.stop.is_set():
        error = SkippedError(f"{action.resource.name}: not started, stopping")
    else:
        env.reporter.action_started(action)
        error = _guarded(env, result, action)
    env.reporter.action_finished(action, error)
    with result.lock:
        (result.errors.append(error) if error is not None else result.done.append(action))
    return error is None


def _guarded(env: _Env, result: ApplyResult, action: Action) -> BatchopsError | None:
    try:
        _execute(env, result, action)
    except BatchopsError as exc:
        return exc
    return None


def _execute(env: _Env, result: ApplyResult, action: Action) -> None:
    if action.dataset is not None:
        create_dataset(env, action, action.dataset)
    elif action.job is not None:
        create_job(env, action.job)
    elif action.download is not None:
        record = download_results(env, action, action.download)
        with result.lock:
            result.records[action.download.job_name] = record
    elif action.kind is Kind.PRUNE_JOB:
        _ignore_missing(env.client.delete_job, action.resource.remote_id)
        output = action.details.get("outputDataset")
        if isinstance(output, str):
            _ignore_missing(env.client.delete_dataset, output)
    elif action.kind is Kind.PRUNE_DATASET:
        _ignore_missing(env.client.delete_dataset, action.resource.remote_id)


def _ignore_missing(delete: Callable[[str], None], remote_id: str) -> None:
    with contextlib.suppress(NotFoundError):  # already gone: the goal is reached
        delete(remote_id)


# -- datasets ----------------------------------------------------------------------------------


def create_dataset(env: _Env, action: Action, spec: DatasetSpec) -> None:
    """create (409 = confirm ours and identical) -> upload -> wait until READY."""
    body = Dataset(
        display_name=spec.display_name, example_count=str(spec.rows), user_uploaded={},
        format=spec.format,
    )  # fmt: skip
    try:
        existing = env.client.create_dataset(spec.dataset_id, body)
    except ConflictError:
        existing = env.client.get_dataset(spec.dataset_id)
        _confirm_dataset(existing, spec, env.project)
    if existing.state == DATASET_STATE_READY:
        return
    progress = _transfer_progress(env, action, spec.size)
    env.client.upload_dataset_files(spec.dataset_id, list(spec.files), progress=progress)
    _wait_ready(env, spec.dataset_id)


def _confirm_dataset(existing: Dataset, spec: DatasetSpec, project: str) -> None:
    if owner_of(existing.display_name) != project:
        raise OwnershipError(f"dataset {spec.dataset_id} exists and is not ours; not touching it")
    if existing.example_count not in (None, str(spec.rows)):
        raise OwnershipError(
            f"dataset {spec.dataset_id} exists with {existing.example_count} rows, expected "
            f"{spec.rows}"
        )


def _wait_ready(env: _Env, dataset_id: str) -> None:
    delay, waited = 0.05, 0.0
    while waited < env.ready_timeout:
        if env.client.get_dataset(dataset_id).state == DATASET_STATE_READY:
            return
        if env.stop.wait(delay):
            raise SkippedError(f"dataset {dataset_id}: stopped while waiting for READY")
        waited += delay
        delay = min(delay * 2, 2.0)
    raise ApiError(f"dataset {dataset_id} was not READY after {env.ready_timeout:.0f} s")


# -- jobs --------------------------------------------------------------------------------------


def job_body(spec: JobSpec, account: str) -> BatchInferenceJob:
    continued = job_resource(account, spec.continued_from) if spec.continued_from else None
    return BatchInferenceJob(
        display_name=spec.display_name, model=spec.model,
        input_dataset_id=dataset_resource(account, spec.input_dataset_id),
        output_dataset_id=dataset_resource(account, spec.output_dataset_id),
        inference_parameters=InferenceParameters.model_validate(spec.inference_parameters),
        precision=spec.precision, continued_from_job_name=continued,
    )  # fmt: skip


def create_job(env: _Env, spec: JobSpec) -> None:
    """create, passing the output dataset ID; a 409 is success once confirmed ours and identical."""
    body = job_body(spec, env.client.account_id)
    try:
        env.client.create_job(spec.job_id, body)
    except ConflictError:
        try:
            existing = env.client.get_job(spec.job_id)
        except NotFoundError:
            # No such job: the 409 was about its output dataset, left behind by an earlier job of
            # this very ID that was pruned (pruning keeps outputs). Re-declaring it must converge.
            _drop_orphan_output(env, spec)
            env.client.create_job(spec.job_id, body)
            return
        _confirm_job(existing, spec, env.project)


def _drop_orphan_output(env: _Env, spec: JobSpec) -> None:
    """Delete ``<job id>-out`` if it is the output of a job with this ID (deleted since)."""
    output = env.client.get_dataset(spec.output_dataset_id)
    source = resource_id(output.source_job_name or "")
    if source not in ("", spec.job_id):
        raise OwnershipError(
            f"output dataset {spec.output_dataset_id} exists and belongs to job {source}; "
            f"job {spec.job_id} cannot be created"
        )
    with contextlib.suppress(NotFoundError):  # a retried DELETE whose first answer was lost
        env.client.delete_dataset(spec.output_dataset_id)


def _confirm_job(existing: BatchInferenceJob, spec: JobSpec, project: str) -> None:
    if owner_of(existing.display_name) != project:
        raise OwnershipError(f"job {spec.job_id} exists and is not ours; not touching it")
    params = existing.inference_parameters.to_wire() if existing.inference_parameters else {}
    same = (
        (existing.model or spec.model) == spec.model
        and resource_id(existing.input_dataset_id or spec.input_dataset_id) == spec.input_dataset_id
        and all(params.get(k) == v for k, v in spec.inference_parameters.items())
    )
    if not same:
        raise OwnershipError(f"job {spec.job_id} exists with a different model, input or params")


# -- results -----------------------------------------------------------------------------------


def download_results(env: _Env, action: Action, spec: DownloadSpec) -> ResultRecord:
    """Check the results path can be written, download the lineage's output datasets into a
    scratch folder under .batchops/, merge, verify, and only then replace the files on disk."""
    try:
        table = spec.table.path if spec.table is not None else None
        check_target(spec.output_path, root=env.root, job_name=spec.job_name, table=table)
        with Scratch(env.root) as scratch:  # before any download: the checks above
            folders = _download_lineage(env, action, spec, scratch.path / "downloads")
            expected = iter_custom_ids(list(spec.input_files)) if spec.input_files else None
            check = answer_check(dict(spec.response_schema)) if spec.response_schema else None
            record = merge_lineage(
                folders, job_name=spec.job_name, job_ids=spec.job_ids, output=spec.output_path,
                expected_ids=expected, root=env.root, partial=spec.partial, scratch=scratch,
                check=check,
            )  # fmt: skip
    except OSError as exc:  # disk full, read-only, a path turned into a file meanwhile, ...
        raise ResultsError(os_problem(spec.job_name, exc, spec.output_path, env.root)) from exc
    if spec.table is not None:
        write_table(spec, env.root)
    return record


def write_table(spec: DownloadSpec, root: Path) -> None:
    """``spec.output.table``: the merged answers joined to their inputs, written atomically
    (after the results, which are already in place when this fails)."""
    table = spec.table
    assert table is not None
    job = JobResults(spec.job_name, spec.output_path, errors_path(spec.output_path))
    inputs = input_rows(spec.input_files) if spec.input_files else None
    try:
        with Scratch(root) as scratch, Joined(
            inputs, [job], tmp_dir=scratch.path, columns=table.columns
        ) as joined:
            rows = chunks(table.format, joined.columns, joined.rows())
            write_atomic(table.path, rows, root=root, scratch=scratch)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        shown = table.path.relative_to(root) if table.path.is_relative_to(root) else table.path
        raise ResultsError(f"{spec.job_name}: results written, but not the table "
                           f"'{shown}' ({why})") from exc  # fmt: skip


def _transfer_progress(env: _Env, action: Action, total: int) -> Callable[[int], None]:
    """A client progress callback (bytes since the last call) that reports the running total."""
    done = 0

    def progress(count: int) -> None:
        nonlocal done
        done += count
        env.reporter.transfer_progress(action, done, total)

    return progress


def _download_lineage(env: _Env, action: Action, spec: DownloadSpec, tmp: Path) -> list[Path]:
    progress = _transfer_progress(env, action, 0)
    folders = []
    last = len(spec.output_dataset_ids) - 1
    for i, ds_id in enumerate(spec.output_dataset_ids):
        try:
            env.client.download_dataset(ds_id, tmp, progress=progress)
        except NotFoundError:
            if i == last:
                raise
            continue  # a failed earlier attempt never wrote an output dataset
        folders.append(tmp / ds_id)
    return folders
