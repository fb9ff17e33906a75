"""A plan's cost: per action that sends rows, its tokens and dollars; budgets checked. Pure.

``batchops.reconcile.load_and_plan`` calls ``estimate`` with the plan, the declared jobs, the
datasets' token counts (``batchops.tokencache``), the local result records (history) and the price
table, and attaches the ``CostReport`` to the plan; the renderers print it and ``apply`` / ``watch``
refuse a plan whose report has refusals (exit code 4, nothing sent).

Per action: rows to send (the planner's count: rows reused from answers already paid for are left
out), input tokens (counted), output tokens worst case (``maxTokens`` x ``n`` x rows; unknown
without ``maxTokens``) and expected (the mean completion tokens per row of this job's earlier
results, at most the worst case; else the worst case), and both figures in dollars.

A job of a pipeline stage that waits on its upstream is not priced (its rows come from answers
not given yet): the report lists it as waiting, with upper bounds on its rows and output where
they are known (``rows_at_most``), and its budgets are checked by the pass that plans it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from batchops.manifest.desired import Desired
from batchops.money import (
    ActionCost,
    Budget,
    CostReport,
    Price,
    PriceTable,
    WaitingCost,
    money_text,
    on_provider,
)
from batchops.plan import Action, Kind, Plan
from batchops.tokencache import DatasetTokens

SENDS_ROWS = frozenset({Kind.CREATE_JOB, Kind.REPLACE_JOB, Kind.RETRY_JOB, Kind.RESUME_JOB})


class JobLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def input_dataset(self) -> str | None: ...
    @property
    def max_cost(self) -> float | None: ...
    @property
    def inference_parameters(self) -> Mapping[str, Any]: ...


class UsageLike(Protocol):
    @property
    def rows(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...


@dataclass(frozen=True)
class CostInputs:
    """Everything ``estimate`` reads besides the plan."""

    jobs: Mapping[str, JobLike]  # by name
    rows: Mapping[str, int]  # dataset name -> rows
    tokens: Mapping[tuple[str, str], DatasetTokens]  # (dataset name, model) -> tokens
    history: Mapping[str, UsageLike]  # job name -> usage of its results on disk
    prices: PriceTable
    budget: Budget
    # dataset name -> at most this many rows, for the input datasets of waiting jobs
    waiting_rows: Mapping[str, int | None] = field(default_factory=dict)
    # action remote ID -> the tokens of exactly the rows it sends, when they are a file of their
    # own (the new rows of a job reusing others, a canary's sample); else the dataset's share
    sent: Mapping[str, DatasetTokens] = field(default_factory=dict)


def rows_to_send(action: Action, job: JobLike, inputs: CostInputs) -> int | None:
    """The rows this action sends: the planner's ``rowsToSend`` (rows reused from answers
    already paid for are not sent), else the input's rows."""
    if action.kind is Kind.RESUME_JOB:
        left = action.details.get("rowsLeft")
        return int(left) if isinstance(left, int) else None
    sent = action.rows_to_send  # the planner's count: reused rows and canary rows left out
    if sent is not None:
        return sent
    if job.input_dataset is None:
        return None  # a remote-only dataset: its rows are not known here
    return inputs.rows.get(job.input_dataset)


def _input_tokens(
    job: JobLike, rows: int | None, inputs: CostInputs, remote_id: str = ""
) -> tuple[int | None, bool]:
    sent = inputs.sent.get(remote_id)
    if sent is not None and sent.tally.rows == rows:  # the very rows it sends, counted
        return sent.input_tokens, sent.exact
    counted = inputs.tokens.get((job.input_dataset or "", job.model))
    if counted is None or rows is None:
        return None, False
    all_rows = counted.tally.rows
    if all_rows == 0 or rows == all_rows:
        return counted.input_tokens, counted.exact
    return round(counted.input_tokens * rows / all_rows), False  # a resume: its share


def _worst_output(params: Mapping[str, Any], rows: int | None) -> int | None:
    max_tokens = params.get("maxTokens")
    if rows is None or not isinstance(max_tokens, int):
        return None
    n = params.get("n") or 1
    return max_tokens * int(n) * rows


def _expected_output(
    job: JobLike, rows: int | None, worst: int | None, inputs: CostInputs
) -> tuple[float | None, str]:
    usage = inputs.history.get(job.name)
    if usage is not None and usage.rows > 0 and rows is not None:
        mean = usage.completion_tokens / usage.rows * rows
        # an earlier run with a higher maxTokens or n: never above what these settings allow
        return (mean if worst is None else min(mean, float(worst))), "history"
    return (None if worst is None else float(worst)), "worst case"


def action_cost(action: Action, inputs: CostInputs) -> ActionCost | None:
    """One action's figures; None for an action that sends no rows."""
    spec = action.job
    if spec is None or action.kind not in SENDS_ROWS:
        return None
    job = inputs.jobs.get(action.resource.name)
    if job is None:
        return None
    rows = rows_to_send(action, job, inputs)
    remote_id = action.resource.remote_id
    figures = _figures(job, spec.model, spec.inference_parameters, rows, inputs, remote_id)
    return ActionCost(job.name, action.resource.remote_id, spec.model, job.provider, *figures)


# rows, input tokens, exact, expected and worst output, expected from, the costs, the price
_Figures = tuple[
    int | None,
    int | None,
    bool,
    float | None,
    int | None,
    str,
    float | None,
    float | None,
    Price | None,
]


def _figures(
    job: JobLike,
    model: str,
    params: Mapping[str, Any],
    rows: int | None,
    inputs: CostInputs,
    remote_id: str = "",
) -> _Figures:
    input_tokens, exact = _input_tokens(job, rows, inputs, remote_id)
    worst = _worst_output(params, rows)
    expected, source = _expected_output(job, rows, worst, inputs)
    price = inputs.prices.lookup(model, job.provider)  # under the job's provider, not fireworks
    cost_expected = cost_worst = None
    if price is not None and input_tokens is not None:
        if expected is not None:
            cost_expected = price.cost(input_tokens, expected)
        if worst is not None:
            cost_worst = price.cost(input_tokens, worst)
    return (rows, input_tokens, exact, expected, worst, source, cost_expected, cost_worst, price)


def _action_costs(plan: Plan, inputs: CostInputs) -> list[ActionCost]:
    """``action_cost`` of every action, the loop inlined: it runs once per job of a plan, and a
    plan's jobs share a few (dataset, model, provider, maxTokens, n, rows to send): their figures
    are computed once per plan and looked up after (a job with history has its own)."""
    jobs, history, memo = inputs.jobs, inputs.history, dict[tuple[Any, ...], _Figures]()
    out: list[ActionCost] = []
    for action in plan.actions:
        kind = action.kind
        if kind not in SENDS_ROWS:
            continue
        spec, resource = action.job, action.resource
        job = jobs.get(resource.name)
        if spec is None or job is None:
            continue
        if kind is Kind.RESUME_JOB:  # rows left are its own
            cost = action_cost(action, inputs)
            out += [cost] if cost is not None else []
            continue
        params, name, provider = spec.inference_parameters, job.name, job.provider
        key: tuple[Any, ...] = (
            job.input_dataset,
            spec.model,
            provider,
            params.get("maxTokens"),
            params.get("n"),
            action.details.get("rowsToSend"),
            name if name in history else None,
            resource.remote_id if resource.remote_id in inputs.sent else None,
        )
        try:
            figures = memo.get(key)
        except TypeError:  # a parameter no dict holds: computed, not remembered
            figures, key = None, ()
        if figures is None:
            rows = rows_to_send(action, job, inputs)
            figures = _figures(job, spec.model, params, rows, inputs, resource.remote_id)
            if key:
                memo[key] = figures
        out.append(ActionCost(name, resource.remote_id, spec.model, provider, *figures))
    return out


def _unknown_why(cost: ActionCost) -> str:
    if cost.price is None:
        return (
            f"no price for {cost.model}{on_provider(cost.provider)} (add one under `prices` "
            "in batchops.yaml)"
        )
    if cost.rows is None or cost.input_tokens is None:
        return "its input rows are not known here (a remote-only dataset)"
    return "its output is unbounded (set inferenceParameters.maxTokens)"


_FIGURE = {"expected": "expected", "worstCase": "worst case"}


def _job_check(cost: ActionCost, job: JobLike, budget: Budget) -> str | None:
    limit = budget.job_max.get(job.name, job.max_cost)
    if limit is None:
        return None
    figure = cost.figure(budget.compare)
    if figure is None:
        return f"job {job.name}: cost unknown, {_unknown_why(cost)}; its budget cannot be checked"
    if figure > limit:
        return (
            f"job {job.name}: {money_text(figure)} ({_FIGURE[budget.compare]}) is over its "
            f"budget of {money_text(limit)}"
        )
    return None


def _plan_checks(costs: list[ActionCost], budget: Budget) -> list[tuple[str, str]]:
    """(the limit's name, the refusal) for each plan-wide limit the total breaks."""
    limits = [
        ("the project budget (batchops.yaml budget.maxCost)", budget.project_max),
        ("--max-cost", budget.cli_max),
    ]
    figures = [c.figure(budget.compare) for c in costs]
    out = []
    for name, limit in limits:
        if limit is None or not costs:
            continue
        if any(f is None for f in figures):
            unknown = next(c for c, f in zip(costs, figures, strict=True) if f is None)
            out.append(
                (
                    name,
                    f"the plan's cost is unknown ({unknown.job}: "
                    f"{_unknown_why(unknown)}); {name} cannot be checked",
                )
            )
            continue
        total = sum(f for f in figures if f is not None)
        if total > limit:
            out.append(
                (
                    name,
                    f"the plan costs {money_text(total)} ({_FIGURE[budget.compare]}), "
                    f"over {name} of {money_text(limit)}",
                )
            )
    return out


def rows_at_most(
    datasets: Iterable[str], desired: Desired, rows: Mapping[str, int]
) -> dict[str, int | None]:
    """An upper bound on the rows each of ``datasets`` has once it can be planned; None when
    none is known (a remote-only input somewhere up the chain). A dataset rendered from jobs'
    answers has at most as many rows as their inputs together (one row per answered input row),
    and at most its source's ``limit``; any other dataset has the rows counted when it
    validated."""
    inputs = {j.name: j.input_dataset for j in desired.jobs}
    return {name: _at_most(name, desired, rows, inputs, ()) for name in datasets}


def _at_most(
    dataset: str | None,
    desired: Desired,
    rows: Mapping[str, int],
    inputs: Mapping[str, str | None],
    seen: tuple[str, ...],
) -> int | None:
    if dataset is None or dataset in seen:
        return None
    decl = desired.dataset(dataset) or next((d for d in desired.pending if d.name == dataset), None)
    render = decl.render if decl is not None else None
    if render is None or not render.upstream:
        return rows.get(dataset)
    # Not the rendered rows of an earlier run: the upstream may answer more rows this time.
    ups = {inputs.get(job) for job in render.upstream}
    bounds = [_at_most(up, desired, rows, inputs, (*seen, dataset)) for up in ups]
    total = None if any(b is None for b in bounds) else sum(b for b in bounds if b is not None)
    if render.limit is None:
        return total
    return render.limit if total is None else min(total, render.limit)


def _waiting(plan: Plan, inputs: CostInputs) -> tuple[WaitingCost, ...]:
    out = []
    for action in plan.actions:
        job = inputs.jobs.get(action.resource.name)
        if action.kind is not Kind.WAITS or job is None:
            continue
        rows = inputs.waiting_rows.get(job.input_dataset or "")
        waits_on = action.details.get("waitsOn")
        out.append(
            WaitingCost(
                job.name,
                job.model,
                job.provider,
                tuple(waits_on) if isinstance(waits_on, list) else (),
                bool(action.details.get("blocked")),
                rows,
                _worst_output(job.inference_parameters, rows),
            )
        )
    return tuple(out)


def estimate(plan: Plan, inputs: CostInputs) -> CostReport:
    """Per-action figures, totals and budget refusals for ``plan``; the jobs that wait on an
    upstream stage listed apart (not priced yet)."""
    report = _estimate(plan, inputs)
    waiting = _waiting(plan, inputs)
    return dataclasses.replace(report, waiting=waiting) if waiting else report


def _estimate(plan: Plan, inputs: CostInputs) -> CostReport:
    budget = inputs.budget
    costs = _action_costs(plan, inputs)
    if (
        budget.project_max is None
        and budget.cli_max is None
        and not any(inputs.jobs[c.job].max_cost is not None for c in costs)
    ):  # no budget applies: the figures alone
        return CostReport(tuple(costs), budget.compare, (), inputs.prices, inputs.jobs)
    refusals, marked = [], []
    for cost in costs:
        why = _job_check(cost, inputs.jobs[cost.job], budget)
        refusals += [why] if why else []
        marked.append(why)
    plan_wide = _plan_checks(costs, budget)
    refusals += [r for _, r in plan_wide]
    if plan_wide:  # every action adds to the total: each is marked with the first limit broken
        marked = [m or f"part of a plan over {plan_wide[0][0]}" for m in marked]
    final = tuple(_marked(c, m) for c, m in zip(costs, marked, strict=True))
    return CostReport(final, budget.compare, tuple(refusals), inputs.prices, inputs.jobs)


def _marked(cost: ActionCost, why: str | None) -> ActionCost:
    return cost if why is None else msgspec.structs.replace(cost, over_budget=why)
