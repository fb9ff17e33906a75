"""One level-triggered pass: load, validate, observe, plan, apply. Used by `apply`, `plan`, `watch`.

Every trigger runs the same full pass; nothing here decides what to do from what changed. Manifests
and datasets are loaded and validated completely before the first API call, so invalid input sends
nothing. Observing costs two paginated list calls whatever the number of declared resources, and
finished jobs whose results are on disk and verified cost nothing more (one query over the
result records, and a stat per file).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from batchops.chains import render_inputs
from batchops.checkcache import CheckCache
from batchops.checks import job_layout, provider_problems
from batchops.config import DEFAULT_WORKERS, ProjectConfig
from batchops.cost import SENDS_ROWS
from batchops.datasets import StatCache, inspect_all
from batchops.errors import (
    BatchopsError,
    BudgetError,
    Diagnostic,
    InvalidInputError,
    NotFoundError,
    OwnershipError,
    StalePlanError,
)
from batchops.gcpause import gc_paused
from batchops.layout import errors_path
from batchops.manifest import load_partial
from batchops.manifest.desired import Desired
from batchops.manifest.select import Selection, Selector, select
from batchops.manifest.stored import StoredManifests
from batchops.money import Budget, PriceTable, shipped_prices
from batchops.outputcache import OutputCache
from batchops.plan import (
    DatasetFacts,
    JobView,
    Kind,
    Observed,
    Plan,
    PlanOptions,
    RowFailures,
    check_prune,
    make_plan,
)
from batchops.plan.rows import FailedRows, RowSplit
from batchops.plan.views import Seen, declared_dataset_ids, views_of
from batchops.pricing import plan_cost
from batchops.providers import Provider, RemoteInput
from batchops.providers.router import ProviderSet
from batchops.results import (
    LocalResult,
    ResultRecord,
    first_errors,
    local_records,
    local_state,
)
from batchops.reuse_rows import rebuild, row_splits
from batchops.row_retries import any_transient, failed_rows, failure_summary
from batchops.sources import relocate

if TYPE_CHECKING:  # apply is imported by the pass that applies: `plan` never needs it
    from batchops.apply import ApplyResult, Reporter

# Kinds after which something is still under way: the next pass has work or waiting to do.
_PENDING = frozenset(
    {
        Kind.CREATE_DATASET,
        Kind.CREATE_JOB,
        Kind.REPLACE_JOB,
        Kind.RETRY_JOB,
        Kind.RESUME_JOB,
        Kind.WAIT,
    }
)


@dataclass(frozen=True)
class PassOptions(PlanOptions):
    """What the plan is asked for, plus how applying it runs."""

    max_workers: int = DEFAULT_WORKERS
    selector: Selector = field(default_factory=Selector)
    narrowed: bool = False  # PATHS name part of the project, not all of it
    budget: Budget = field(default_factory=Budget)  # the project's and --max-cost (issue 15)
    # the shipped table with the project file's prices over it (``config.price_table``)
    prices: PriceTable = field(default_factory=shipped_prices)
    tokenizers: Mapping[str, Path] = field(default_factory=dict)  # model -> tokenizer.json

    def plan_options(self) -> PlanOptions:
        return PlanOptions(**{f.name: getattr(self, f.name) for f in fields(PlanOptions)})

    def scoped(self, selection: Selection) -> PlanOptions:
        """The plan options for a selection: a narrowed plan prunes only what it declares."""
        options = self.plan_options()
        if not (self.narrowed or self.selector.active):
            return options
        desired = selection.desired
        names = {j.name for j in desired.jobs} | {d.name for d in desired.datasets}
        return replace(options, prune_scope=frozenset(names))


@dataclass(frozen=True)
class SavedPlanCheck:
    """What `apply PLANFILE` must find again: the same observations and the same actions."""

    fingerprint: str
    actions: tuple[tuple[str, str], ...]  # (kind, remote ID)


@dataclass
class Context:
    """Everything a plan was computed from (status and apply read it too)."""

    root: Path
    project: str
    desired: Desired
    infos: Mapping[str, DatasetFacts]
    observed: Observed
    local: Mapping[str, LocalResult]
    rows: Mapping[str, RowSplit] = field(default_factory=dict)  # reused vs to send, per job
    failed_rows: Mapping[str, FailedRows] = field(default_factory=dict)  # classified, per job

    @cached_property
    def seen(self) -> Seen:
        """The observed resources indexed (built once: ``views`` and `status` both read it)."""
        return Seen.of(self.observed, self.project)

    def views(self) -> list[JobView]:
        ds_ids = declared_dataset_ids(self.desired, self.infos, self.project, self.seen)
        return views_of(self.desired, ds_ids, self.seen, self.local, self.project, self.rows)


@dataclass
class PassResult:
    plan: Plan
    errors: list[BatchopsError]
    converged: bool  # nothing left to wait for
    failed_jobs: list[str] = field(default_factory=list)  # failed, or expired for good (exit 3)
    row_failures: list[RowFailures] = field(default_factory=list)  # jobs with failed rows
    job_states: dict[str, int] = field(default_factory=dict)  # state -> count over declared jobs
    applied: ApplyResult | None = None
    # A merge completed while a stage waits on its upstream: the next pass may start it, so it
    # runs now rather than after the poll interval or resync tick (issue 16).
    unblocked: bool = False


Inputs = tuple[Desired, Mapping[str, DatasetFacts]]


def load_inputs(
    paths: Sequence[Path], *, root: Path, project_file: ProjectConfig | None = None
) -> Inputs:
    """Load manifests, render the datasets built from tables and validate every dataset; raises
    InvalidInputError with every problem (the datasets of the valid documents are rendered and
    checked even when other documents are invalid)."""
    cache = StoredManifests(root)  # unchanged manifests are not parsed again
    desired, diags = load_partial(list(paths), root=root, project=project_file, cache=cache)
    return prepare_inputs(desired, root=root, problems=diags, project_file=project_file)


def prepare_inputs(
    desired: Desired,
    *,
    root: Path,
    problems: Sequence[Diagnostic] = (),
    project_file: ProjectConfig | None = None,
) -> Inputs:
    """Render the datasets built from tables, then validate every dataset: every problem of both
    (and ``problems`` already found) at once, in one InvalidInputError."""
    found: list[Diagnostic] = list(problems)
    desired = render_inputs(desired, root=root, problems=found)
    try:
        infos = inspect_all(desired, root=root, cache=StatCache.for_root(root))
    except InvalidInputError as exc:
        found.extend(relocate(exc.diagnostics, desired))
    if not found:  # each job's provider's own rules, on inputs that validated
        found += provider_problems(desired, root=root, project=project_file)
    if found:
        raise InvalidInputError(sorted(set(found)))
    return desired, infos


def local_results(desired: Desired, root: Path) -> dict[str, LocalResult]:
    records = local_records(root)  # one query for every job's record
    return {
        job.name: local_state(root, job.name, job.output_path, records=records)
        for job in desired.jobs
    }


def observe_all(
    provider: Provider, desired: Desired, root: Path, *, project: str
) -> tuple[Observed, dict[str, LocalResult]]:
    """The two list calls side by side, while the local results are checked: a pass's latency
    is then about one paginated list, whatever the number of declared jobs. The lists ask the
    server for this project's resources only (its mark in the display name), so their cost
    follows the manifests, not the account; the few remote datasets that manifests name by ID
    (``inputDatasetId``, someone else's) are fetched one by one beside them."""
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="observe") as pool:
        datasets = pool.submit(provider.list_inputs, project=project)
        jobs = pool.submit(provider.list_jobs, project=project)
        local = local_results(desired, root)
        named = _named_datasets(provider, desired, datasets.result())
        observed = Observed(
            datasets=(*datasets.result(), *named),
            jobs=tuple(jobs.result()),
            id_limits=id_limits(provider),
        )
        return observed, local


def id_limits(provider: Provider) -> tuple[tuple[str, int], ...]:
    """Each provider's longest ID by name (a ``ProviderSet`` holds several)."""
    limits = (
        provider.id_limits()
        if isinstance(provider, ProviderSet)
        else {provider.name: provider.max_id_length}
    )
    return tuple(sorted(limits.items()))


def _named_datasets(
    provider: Provider, desired: Desired, listed: Sequence[RemoteInput]
) -> list[RemoteInput]:
    """The datasets jobs name by ID that the filtered list did not return (absent ones too)."""
    have = {ds.key for ds in listed}
    wanted = sorted({_bare(j.input_dataset_id) for j in desired.jobs if j.input_dataset_id} - have)
    found = []
    for ds_id in wanted:
        with contextlib.suppress(NotFoundError):
            found.append(provider.get_input(ds_id))
    return found


def _bare(name: str) -> str:
    """A dataset ID from an ID or a resource name (accounts/a/datasets/ID)."""
    return name.rsplit("/", 1)[-1]


def load_and_plan(
    paths: Sequence[Path],
    *,
    root: Path,
    provider: Provider,
    project: str,
    options: PassOptions,
    inputs: Inputs | None = None,
    project_file: ProjectConfig | None = None,
    outputs: OutputCache | None = None,
) -> Plan:
    """What `batchops plan` shows and `apply` executes: inputs first, then the two list calls.

    ``inputs`` are ``load_inputs``' answer when the caller validated before opening the provider;
    ``outputs`` keeps the job outputs read for the reuse index, for the merge of the same pass."""
    if inputs is None:
        inputs = load_inputs(paths, root=root, project_file=project_file)
    all_desired, infos = inputs
    selection = select(all_desired, options.selector)
    desired, plan_options = selection.desired, options.scoped(selection)
    check_prune(desired, plan_options)  # before any API call
    with gc_paused():
        ctx = load_context(
            provider, root=root, project=project, inputs=(desired, infos), outputs=outputs
        )
        plan = make_plan(
            desired,
            infos,
            ctx.observed,
            ctx.local,
            plan_options,
            project=project,
            rows=ctx.rows,
            failed_rows=ctx.failed_rows,
        )
        cost = plan_cost(plan, desired, infos, ctx.local, options, root, ctx.rows)
        plan = with_layouts(plan, root=root, project_file=project_file)
    return replace(
        plan,
        outside_jobs=selection.outside_jobs,
        outside_datasets=selection.outside_datasets,
        cost=cost,
    )


def with_layouts(plan: Plan, *, root: Path, project_file: ProjectConfig | None) -> Plan:
    """Each job action that sends rows, with the parts and waves its provider submits them in
    when that is more than one batch (``layout`` in its details, and said in its reason)."""
    actions = []
    cache = CheckCache(root)  # unchanged files are not read again for their layout
    for action in plan.actions:
        spec = action.job
        layout = None
        if spec is not None and action.kind in SENDS_ROWS and action.kind is not Kind.RESUME_JOB:
            layout = job_layout(
                spec.provider,
                spec.model,
                spec.inference_parameters,
                spec.input_files,
                root=root,
                project=project_file,
                cache=cache,
            )
        if layout is None or not layout.shown:
            actions.append(action)
            continue
        details = {**action.details, "layout": layout.to_json()}
        actions.append(
            replace(action, reason=f"{action.reason}; {layout.describe()}", details=details)
        )
    cache.save()
    return replace(plan, actions=tuple(actions))


def load_context(
    provider: Provider,
    *,
    root: Path,
    project: str,
    inputs: Inputs,
    outputs: OutputCache | None = None,
) -> Context:
    """The observed world beside the validated inputs, with no plan (what `status` reads)."""
    desired, infos = inputs
    observed, local = observe_all(provider, desired, root, project=project)
    rebuild(provider, observed, desired, infos, root=root, project=project, outputs=outputs)
    rows = row_splits(desired, infos, root=root, project=project)
    failed = failed_rows(desired, local, root=root)
    return Context(root, project, desired, infos, observed, local, rows, failed)


def check_saved(plan: Plan, saved: SavedPlanCheck) -> None:
    actions = tuple((a.kind.value, a.resource.remote_id) for a in plan.actions if a.is_change)
    if plan.fingerprint != saved.fingerprint or actions != saved.actions:
        raise StalePlanError(
            "the saved plan is stale: the remote resources, the manifests or the local results "
            "changed since it was made; run `batchops plan` again"
        )


def run_pass(
    paths: Sequence[Path],
    *,
    root: Path,
    provider: Provider,
    project: str,
    options: PassOptions,
    reporter: Reporter | None = None,
    stop: threading.Event | None = None,
    saved: SavedPlanCheck | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    inputs: Inputs | None = None,
    project_file: ProjectConfig | None = None,
) -> PassResult:
    """One full pass. Raises InvalidInputError (nothing sent), StalePlanError, or API errors of the
    observe step; errors of individual actions are collected in the result instead."""
    from batchops.apply import apply_plan

    with OutputCache(root) as outputs:  # a job's output is downloaded once per pass
        plan = load_and_plan(
            paths,
            root=root,
            provider=provider,
            project=project,
            options=options,
            inputs=inputs,
            project_file=project_file,
            outputs=outputs,
        )
        if saved is not None:
            check_saved(plan, saved)
        if on_plan is not None:
            on_plan(plan)
        if plan.cost is not None and plan.cost.refusals:
            raise BudgetError(plan.cost.refusals)  # shown with the plan, before anything is sent
        applied = apply_plan(
            plan,
            provider=provider,
            root=root,
            reporter=reporter,
            max_workers=options.max_workers,
            stop=stop,
            outputs=outputs,
        )
    return summarize(plan, applied)


def _rows_to_retry(plan: Plan, applied: ApplyResult) -> bool:
    """A merge just found failed rows of a job with row retries left: the next pass decides
    whether to send them again, so the work is not over yet."""
    for action in plan.actions:
        spec = action.download
        record = applied.records.get(spec.job_name) if spec is not None else None
        if spec is None or not spec.rows_retry_left or record is None:
            continue
        if record.counts.failed > record.counts.nonconforming and any_transient(
            errors_path(spec.output_path)
        ):  # responseFormat failures are permanent: no need to read them
            return True
    return False


def summarize(plan: Plan, applied: ApplyResult) -> PassResult:
    errors = list(applied.errors)
    errors += [
        OwnershipError(f"{a.resource.remote_id}: {a.reason}")
        for a in plan.actions
        if a.kind is Kind.CONFLICT
    ]
    rows = row_failures(plan, applied.records)
    failed = sorted(
        {a.resource.name for a in plan.actions if a.kind in (Kind.FAILED, Kind.EXPIRED)}
        | {r.job for r in rows if r.over_limit}
    )
    pending = any(a.kind in _PENDING for a in plan.actions) or _rows_to_retry(plan, applied)
    pending = pending or any(
        a.kind is Kind.WAITS and not a.details.get("blocked") for a in plan.actions
    )  # a stage waits on its upstream
    return PassResult(
        plan=plan,
        errors=errors,
        converged=not pending and not errors,
        failed_jobs=failed,
        job_states=dict(Counter(state for _, state in plan.job_states)),
        applied=applied,
        row_failures=rows,
        unblocked=_unblocked(plan, applied),
    )


def _unblocked(plan: Plan, applied: ApplyResult) -> bool:
    """Results of a job that a waiting stage depends on were merged by this pass."""
    merged = set(applied.records)
    if not merged:
        return False
    waiting = [
        plan.decl(a.resource.name)
        for a in plan.actions
        if a.kind is Kind.WAITS and not a.details.get("blocked")
    ]
    return any(d is not None and merged & set(d.depends_on) for d in waiting)


def row_failures(plan: Plan, merged: Mapping[str, ResultRecord]) -> list[RowFailures]:
    """Each declared job whose current results hold failed rows (``merged``: records this pass
    wrote, which replace the plan's), with its limit, its first error messages and its failed
    rows by class and reason (what the closing lines and the step summary show)."""
    found = []
    for decl, current in plan.declared:
        record = merged.get(decl.name, current)
        if record is None or not record.counts.failed:
            continue
        c = record.counts
        total = c.expected or c.succeeded + c.failed
        found.append(
            RowFailures(
                decl.name,
                c.failed,
                total,
                decl.allowed_failures(total),
                first_errors(record.errors.path),
                failure_summary(Path(record.errors.path)),
            )
        )
    return found
