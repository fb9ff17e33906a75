"""Executes a Plan: datasets before the jobs reading them, a bounded thread pool, errors collected.

``batchops.reconcile.run_pass`` calls ``apply_plan``. Each action is idempotent: IDs are
deterministic, so a create that answers 409 is success once the existing resource is confirmed ours
and identical, and an interrupted apply is finished by the next one. One action's error never
aborts the others; all are returned. Progress goes to an injected ``Reporter`` (the CLI draws bars).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec

from batchops.config import DEFAULT_WORKERS
from batchops.datasets import StatCache, iter_custom_ids
from batchops.errors import BatchopsError, NotFoundError
from batchops.layout import errors_path
from batchops.merge import merge_lineage
from batchops.outputcache import OutputCache
from batchops.plan import (
    LOCAL_CHANGES,
    REMOTE_CHANGES,
    Action,
    DatasetSpec,
    DownloadSpec,
    JobSpec,
    Kind,
    Plan,
)
from batchops.providers import Provider, Stopped
from batchops.results import (
    ResultRecord,
    ResultsError,
    Usage,
    check_target,
    local_record,
    os_problem,
    save_record,
    spend_added,
    write_atomic,
)
from batchops.reuse import record_answers, write_reused
from batchops.scratch import Scratch, sweep_all
from batchops.sources.conform import answer_check
from batchops.sources.join import JobResults, Joined, input_rows
from batchops.sources.kept import forget_other_inputs, keep_inputs
from batchops.sources.writers import chunks
from batchops.stamps import InputsUsed, inputs_used

READY_TIMEOUT = 600.0  # seconds a fresh dataset may take to become READY after its upload
_PRUNES = (Kind.PRUNE_JOB, Kind.PRUNE_DATASET)  # last, jobs first: the jobs read the datasets


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
    spent: dict[str, Usage] = field(default_factory=dict)  # job name -> spend the merge added
    done: list[Action] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass(frozen=True)
class _Env:
    provider: Provider
    root: Path
    project: str
    reporter: Reporter
    stop: threading.Event
    ready_timeout: float
    outputs: OutputCache | None = None  # job outputs this pass downloaded already
    datasets: StatCache | None = None  # the input files' digests, for the results records


def apply_plan(
    plan: Plan,
    *,
    provider: Provider,
    root: Path,
    reporter: Reporter | None = None,
    max_workers: int = DEFAULT_WORKERS,
    stop: threading.Event | None = None,
    ready_timeout: float = READY_TIMEOUT,
    outputs: OutputCache | None = None,
) -> ApplyResult:
    """Run every change in ``plan``; return what was done and every error, never raise one.
    ``outputs``: job outputs the pass downloaded already (the merges take them from there)."""
    env = _Env(
        provider,
        root,
        plan.project,
        reporter or NullReporter(),
        stop or threading.Event(),
        ready_timeout,
        outputs,
        StatCache.for_root(root),  # read once, by the first merge that needs it
    )
    result = ApplyResult()
    sweep_all(root)  # a killed run's scratch folders (its lock is free), before making ours
    changes = [a for a in plan.actions if a.kind in REMOTE_CHANGES or a.kind in LOCAL_CHANGES]
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="apply") as pool:
        datasets = {
            a.resource.remote_id: pool.submit(_run, env, result, a, None)
            for a in changes
            if a.kind is Kind.CREATE_DATASET
        }
        # Every other change (jobs, downloads, duplicate cancels), each after its input dataset.
        others = [
            pool.submit(_run, env, result, a, datasets.get(a.after or ""))
            for a in changes
            if a.kind is not Kind.CREATE_DATASET and a.kind not in _PRUNES
        ]
        _wait_all([*datasets.values(), *others])
        for kind in _PRUNES:
            _wait_all([pool.submit(_run, env, result, a, None) for a in _of(changes, kind)])
    return result


def _of(actions: list[Action], kind: Kind) -> list[Action]:
    return [a for a in actions if a.kind is kind]


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
        if action.download.table_only:  # nothing merged: the results are current
            download_results(env, action, action.download)
            return
        name = action.download.job_name
        before = local_record(env.root, name)  # what the job had spent before this merge
        record = download_results(env, action, action.download)
        added = spend_added(before, record)
        with result.lock:
            result.records[name] = record
            if added is not None:
                result.spent[name] = added
    elif action.kind is Kind.CANCEL_DUPLICATE:
        env.provider.cancel_duplicates(action.resource.remote_id)
    elif action.kind is Kind.PRUNE_JOB:
        stop = env.provider.cancel_job if action.details.get("cancel") else env.provider.delete_job
        _ignore_missing(stop, action.resource.remote_id)
        output = action.details.get("outputDataset")
        if isinstance(output, str):
            _ignore_missing(env.provider.delete_input, output)
    elif action.kind is Kind.PRUNE_DATASET:
        _ignore_missing(env.provider.delete_input, action.resource.remote_id)


def _ignore_missing(delete: Callable[[str], None], remote_id: str) -> None:
    with contextlib.suppress(NotFoundError):  # already gone: the goal is reached
        delete(remote_id)


# -- datasets ----------------------------------------------------------------------------------


def create_dataset(env: _Env, action: Action, spec: DatasetSpec) -> None:
    """Create, upload and wait until jobs may read it (the provider makes it idempotent)."""
    progress = _transfer_progress(env, action, spec.size)
    try:
        env.provider.create_input(
            spec,
            project=env.project,
            progress=progress,
            stop=env.stop,
            ready_timeout=env.ready_timeout,
        )
    except Stopped as exc:
        raise SkippedError(str(exc)) from exc


# -- jobs --------------------------------------------------------------------------------------


def create_job(env: _Env, spec: JobSpec) -> None:
    """Create a job; one already there, ours and identical, is success (the provider checks)."""
    env.provider.create_job(spec, project=env.project)


# -- results -----------------------------------------------------------------------------------


def download_results(env: _Env, action: Action, spec: DownloadSpec) -> ResultRecord:
    """Check the results path can be written, download the lineage's output datasets into a
    scratch folder under .batchops/, merge, verify, and only then replace the files on disk.
    ``spec.table_only``: the results on disk are current; only their table is written again."""
    if spec.table_only:
        current = local_record(env.root, spec.job_name)
        if current is not None:
            return _with_table(env, spec, current)
    try:
        table = spec.table.path if spec.table is not None else None
        check_target(spec.output_path, root=env.root, job_name=spec.job_name, table=table)
        with Scratch(env.root) as scratch:  # before any download: the checks above
            folders = _download_lineage(env, action, spec, scratch.path / "downloads")
            if spec.request_prefix is not None and spec.input_files:
                reused = scratch.path / "reused"  # lowest priority: the lineage's lines win
                write_reused(
                    env.root, spec.request_prefix, spec.input_files, reused, lineage=spec.job_ids
                )
                folders = [reused, *folders]
            expected = iter_custom_ids(list(spec.input_files)) if spec.input_files else None
            check = answer_check(dict(spec.response_schema)) if spec.response_schema else None
            inputs = _inputs_used(env, spec) if spec.input_files else None
            record = merge_lineage(
                folders,
                job_name=spec.job_name,
                job_ids=spec.job_ids,
                output=spec.output_path,
                expected_ids=expected,
                root=env.root,
                partial=spec.partial,
                scratch=scratch,
                check=check,
                inputs=inputs,
            )
        if inputs is not None:
            kept = Path(inputs.kept) if inputs.kept else None
            forget_other_inputs(env.root, spec.job_name, kept)
        if spec.request_prefix is not None and spec.input_files:
            record_answers(
                env.root, spec.request_prefix, spec.input_files, spec.output_path, spec.job_ids
            )
    except OSError as exc:  # disk full, read-only, a path turned into a file meanwhile, ...
        raise ResultsError(os_problem(spec.job_name, exc, spec.output_path, env.root)) from exc
    return _with_table(env, spec, record)


def _with_table(env: _Env, spec: DownloadSpec, record: ResultRecord) -> ResultRecord:
    """The record, once the table it asks for is written (and said in the record)."""
    if spec.table is None:
        return record
    write_table(spec, env.root)
    stamped = msgspec.structs.replace(record, table=spec.table.stamp)
    save_record(env.root, stamped)
    return stamped


def _inputs_used(env: _Env, spec: DownloadSpec) -> InputsUsed:
    """What the merge answers, for ``batchops results``: the input files as they are (the plan
    just checked them), and a rendered dataset's input rows kept beside the record."""
    cache = env.datasets

    def sha256(file: Path, st: os.stat_result) -> str:
        entry = cache.lookup(file, st) if cache is not None else None
        digest = entry.get("sha256") if entry is not None else None
        return digest if isinstance(digest, str) else ""

    kept = keep_inputs(env.root, spec.job_name, spec.input_files)
    used = inputs_used(spec.input_files, sha256)
    return InputsUsed(used.files, str(kept) if kept is not None else None)


def write_table(spec: DownloadSpec, root: Path) -> None:
    """``spec.output.table``: the merged answers joined to their inputs, written atomically
    (after the results, which are already in place when this fails)."""
    table = spec.table
    assert table is not None
    job = JobResults(spec.job_name, spec.output_path, errors_path(spec.output_path))
    inputs = input_rows(spec.input_files) if spec.input_files else None
    try:
        with (
            Scratch(root) as scratch,
            Joined(
                inputs, [job], tmp_dir=scratch.path, columns=table.columns, key=spec.id_column
            ) as joined,
        ):
            rows = chunks(table.format, joined.columns, joined.rows())
            write_atomic(table.path, rows, root=root, scratch=scratch)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        shown = table.path.relative_to(root) if table.path.is_relative_to(root) else table.path
        raise ResultsError(
            f"{spec.job_name}: results written, but not the table '{shown}' ({why})"
        ) from exc


def _transfer_progress(env: _Env, action: Action, total: int) -> Callable[[int], None]:
    """A client progress callback (bytes since the last call) that reports the running total."""
    done = 0

    def progress(count: int) -> None:
        nonlocal done
        done += count
        env.reporter.transfer_progress(action, done, total)

    return progress


def _download_lineage(env: _Env, action: Action, spec: DownloadSpec, tmp: Path) -> list[Path]:
    if not spec.output_dataset_ids:  # every row reused: nothing to download
        return []
    progress = _transfer_progress(env, action, 0)
    if env.outputs is not None:
        return env.outputs.lineage(env.provider, spec.job_ids, tmp, progress=progress)
    return env.provider.download_outputs(spec.job_ids, tmp, progress=progress)
