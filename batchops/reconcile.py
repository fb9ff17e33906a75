"""One level-triggered pass: load, validate, observe, plan, apply. Used by `apply`, `plan`, `watch`.

Every trigger runs the same full pass; nothing here decides what to do from what changed. Manifests
and datasets are loaded and validated completely before the first API call, so invalid input sends
nothing. Observing costs two paginated list calls whatever the number of declared resources, and
finished jobs whose results are on disk and verified cost nothing more (one query over the
result records, and a stat per file).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from batchops.apply import DEFAULT_WORKERS, ApplyResult, Reporter, apply_plan
from batchops.checks import check_providers
from batchops.config import ProjectConfig
from batchops.datasets import StatCache, inspect_all
from batchops.errors import BatchopsError, InvalidInputError, OwnershipError, StalePlanError
from batchops.manifest import load_partial
from batchops.manifest.desired import Desired
from batchops.manifest.select import Selection, Selector, select
from batchops.plan import (
    DatasetFacts,
    JobView,
    Kind,
    Observed,
    Plan,
    PlanOptions,
    RowFailures,
    check_prune,
    job_views,
    make_plan,
)
from batchops.providers import Provider
from batchops.results import (
    LocalResult,
    ResultRecord,
    first_errors,
    local_records,
    local_state,
)

# Kinds after which something is still under way: the next pass has work or waiting to do.
_PENDING = frozenset(
    {Kind.CREATE_DATASET, Kind.CREATE_JOB, Kind.REPLACE_JOB, Kind.RETRY_JOB, Kind.RESUME_JOB,
     Kind.WAIT}
)  # fmt: skip


@dataclass(frozen=True)
class PassOptions(PlanOptions):
    """What the plan is asked for, plus how applying it runs."""

    max_workers: int = DEFAULT_WORKERS
    selector: Selector = field(default_factory=Selector)
    narrowed: bool = False  # PATHS name part of the project, not all of it

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

    def views(self) -> list[JobView]:
        return job_views(self.desired, self.infos, self.observed, self.local,
                         project=self.project)  # fmt: skip


@dataclass
class PassResult:
    plan: Plan
    errors: list[BatchopsError]
    converged: bool  # nothing left to wait for
    failed_jobs: list[str] = field(default_factory=list)  # failed, or expired for good (exit 3)
    row_failures: list[RowFailures] = field(default_factory=list)  # jobs with failed rows
    job_states: dict[str, int] = field(default_factory=dict)  # state -> count over declared jobs
    applied: ApplyResult | None = None


Inputs = tuple[Desired, Mapping[str, DatasetFacts]]


def load_inputs(
    paths: Sequence[Path], *, root: Path, project_file: ProjectConfig | None = None
) -> Inputs:
    """Load manifests and validate every dataset; raises InvalidInputError with every problem
    (the datasets of the valid documents are checked even when other documents are invalid)."""
    desired, diags = load_partial(list(paths), root=root, project=project_file)
    try:
        infos = inspect_all(desired, root=root, cache=StatCache.for_root(root))
    except InvalidInputError as exc:
        diags += exc.diagnostics
    if diags:
        raise InvalidInputError(sorted(set(diags)))
    check_providers(desired, root=root, project=project_file)
    return desired, infos


def local_results(desired: Desired, root: Path) -> dict[str, LocalResult]:
    records = local_records(root)  # one query for every job's record
    return {
        job.name: local_state(root, job.name, job.output_path, records=records)
        for job in desired.jobs
    }


def observe_all(
    provider: Provider, desired: Desired, root: Path
) -> tuple[Observed, dict[str, LocalResult]]:
    """The two list calls side by side, while the local results are checked: a pass's latency
    is then about one paginated list, whatever the number of declared jobs."""
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="observe") as pool:
        datasets = pool.submit(provider.list_inputs)
        jobs = pool.submit(provider.list_jobs)
        local = local_results(desired, root)
        return Observed(datasets=tuple(datasets.result()), jobs=tuple(jobs.result())), local


def load_and_plan(
    paths: Sequence[Path],
    *,
    root: Path,
    provider: Provider,
    project: str,
    options: PassOptions,
    inputs: Inputs | None = None,
    project_file: ProjectConfig | None = None,
) -> Plan:
    """What `batchops plan` shows and `apply` executes: inputs first, then the two list calls.

    ``inputs`` are ``load_inputs``' answer when the caller validated before opening the provider."""
    if inputs is None:
        inputs = load_inputs(paths, root=root, project_file=project_file)
    all_desired, infos = inputs
    selection = select(all_desired, options.selector)
    desired, plan_options = selection.desired, options.scoped(selection)
    check_prune(desired, plan_options)  # before any API call
    with gc_paused():
        ctx = load_context(provider, root=root, project=project, inputs=(desired, infos))
        plan = make_plan(desired, infos, ctx.observed, ctx.local, plan_options, project=project)
    return replace(plan, outside_jobs=selection.outside_jobs,
                   outside_datasets=selection.outside_datasets)  # fmt: skip


def load_context(provider: Provider, *, root: Path, project: str, inputs: Inputs) -> Context:
    """The observed world beside the validated inputs, with no plan (what `status` reads)."""
    desired, infos = inputs
    observed, local = observe_all(provider, desired, root)
    return Context(root, project, desired, infos, observed, local)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while observing and planning. Those make tens of thousands
    of acyclic objects (a model per listed resource) that live until the pass ends; the collector
    would walk them again and again as they age, and now and then all of memory with them (a
    full collection in the middle of a 1,000-job plan costs 80 ms; bench/plan.py). Once the block
    ends they are collected as usual: reference counting frees them, and a cycle among them, if
    any, is found by the next collection."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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
    plan = load_and_plan(paths, root=root, provider=provider, project=project, options=options,
                         inputs=inputs, project_file=project_file)  # fmt: skip
    if saved is not None:
        check_saved(plan, saved)
    if on_plan is not None:
        on_plan(plan)
    applied = apply_plan(plan, provider=provider, root=root, reporter=reporter,
                         max_workers=options.max_workers, stop=stop)  # fmt: skip
    return summarize(plan, applied)


def summarize(plan: Plan, applied: ApplyResult) -> PassResult:
    errors = list(applied.errors)
    errors += [OwnershipError(f"{a.resource.remote_id}: {a.reason}") for a in plan.actions
               if a.kind is Kind.CONFLICT]  # fmt: skip
    rows = row_failures(plan, applied.records)
    failed = sorted({a.resource.name for a in plan.actions if a.kind in (Kind.FAILED, Kind.EXPIRED)}
                    | {r.job for r in rows if r.over_limit})  # fmt: skip
    pending = any(a.kind in _PENDING for a in plan.actions)
    return PassResult(
        plan=plan, errors=errors, converged=not pending and not errors, failed_jobs=failed,
        job_states=dict(Counter(state for _, state in plan.job_states)), applied=applied,
        row_failures=rows,
    )  # fmt: skip


def row_failures(plan: Plan, merged: Mapping[str, ResultRecord]) -> list[RowFailures]:
    """Each declared job whose current results hold failed rows (``merged``: records this pass
    wrote, which replace the plan's), with its limit and its first error messages."""
    found = []
    for decl, current in plan.declared:
        record = merged.get(decl.name, current)
        if record is None or not record.counts.failed:
            continue
        c = record.counts
        total = c.expected or c.succeeded + c.failed
        found.append(RowFailures(decl.name, c.failed, total, decl.allowed_failures(total),
                                 first_errors(record.errors.path)))  # fmt: skip
    return found
