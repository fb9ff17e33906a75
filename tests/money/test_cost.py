"""The plan's cost (batchops.cost.estimate) and budgets: pure, on planned actions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from batchops.cost import CostInputs, estimate
from batchops.manifest.desired import DatasetDecl, Desired, JobDecl, Source
from batchops.money import Budget, Price, PriceOverride, PriceTable, money_text, shipped_prices
from batchops.plan import Kind, Observed, Plan, PlanOptions, make_plan
from batchops.render.plan import plan_json, plan_markdown, plan_text
from batchops.results import Usage
from batchops.tokencache import DatasetTokens, Tally
from batchops.tokens import OPENAI

ROOT = Path("/repo")
MODEL = "accounts/fireworks/models/llama-v3p1-8b-instruct"
PRICE = Price(input=0.10, output=0.20)


class Facts:
    def __init__(self, rows: int) -> None:
        self.sha256, self.rows, self.size = "a" * 64, rows, 100


def _job(
    name: str = "j",
    *,
    model: str = MODEL,
    max_cost: float | None = None,
    params: dict[str, object] | None = None,
) -> JobDecl:
    return JobDecl(
        name=name,
        model=model,
        source=Source("jobs/a.yaml"),
        input_dataset="d",
        inference_parameters=params or {"maxTokens": 100, "n": 2},
        output_path=ROOT / "results" / f"{name}.jsonl",
        output_display="r",
        max_cost=max_cost,
    )


def _plan(*jobs: JobDecl, rows: int = 1000) -> tuple[Plan, Desired]:
    ds = DatasetDecl(name="d", path="d.jsonl", files=(ROOT / "d.jsonl",), source=Source("x"))
    desired = Desired(root=ROOT, datasets=(ds,), jobs=jobs)
    plan = make_plan(desired, {"d": Facts(rows)}, Observed(), {}, PlanOptions(), project="p")
    return plan, desired


def _inputs(
    desired: Desired,
    *,
    rows: int = 1000,
    history: dict[str, Usage] | None = None,
    budget: Budget | None = None,
    prices: PriceTable | None = None,
) -> CostInputs:
    tokens = {
        ("d", j.model): DatasetTokens(Tally(rows, rows, 40 * rows), "cl100k_base", True, OPENAI)
        for j in desired.jobs
    }
    return CostInputs(
        jobs={j.name: j for j in desired.jobs},
        rows={"d": rows},
        tokens=tokens,
        history=history or {},
        prices=prices or PriceTable({"fireworks": {MODEL: PRICE}}),
        budget=budget or Budget(),
    )


def test_each_job_to_create_shows_rows_tokens_and_both_costs() -> None:
    plan, desired = _plan(_job())
    [cost] = estimate(plan, _inputs(desired)).actions
    assert (cost.rows, cost.input_tokens, cost.input_exact) == (1000, 1000 * (40 + 4 + 3), True)
    assert cost.output_worst == 100 * 2 * 1000  # maxTokens x n x rows
    assert cost.output_expected == cost.output_worst and cost.expected_from == "worst case"
    assert cost.cost_worst == pytest.approx((47_000 * 0.10 + 200_000 * 0.20) / 1e6)


def test_the_expected_output_comes_from_the_jobs_earlier_results() -> None:
    plan, desired = _plan(_job())
    history = {"j": Usage(rows=10, prompt_tokens=470, completion_tokens=250)}
    [cost] = estimate(plan, _inputs(desired, history=history)).actions
    assert cost.expected_from == "history" and cost.output_expected == 25 * 1000
    assert cost.cost_expected == pytest.approx((47_000 * 0.10 + 25_000 * 0.20) / 1e6)


def test_an_unknown_price_is_unknown_never_zero() -> None:
    plan, desired = _plan(_job(model="accounts/fireworks/models/nobody-prices-this"))
    report = estimate(plan, _inputs(desired))
    assert report.actions[0].cost_worst is None and report.cost_worst is None
    text = plan_text(dataclasses.replace(plan, cost=report))
    assert "unknown" in text and "$0" not in text
    assert "no price for accounts/fireworks/models/nobody-prices-this" in text


def test_a_job_over_its_budget_is_marked_and_refused() -> None:
    plan, desired = _plan(_job("cheap", max_cost=100.0), _job("dear", max_cost=0.01))
    report = estimate(plan, _inputs(desired))
    marks = {c.job: c.over_budget for c in report.actions}
    assert marks["cheap"] is None and "over its budget of $0.01" in (marks["dear"] or "")
    assert len(report.refusals) == 1 and report.refusals[0].startswith("job dear:")


def test_the_compared_figure_is_a_setting_worst_case_by_default() -> None:
    plan, desired = _plan(_job())
    history = {"j": Usage(rows=10, prompt_tokens=470, completion_tokens=10)}  # 1 token a row
    limit = 0.01  # worst case ~ $0.045, expected ~ $0.005
    worst = estimate(plan, _inputs(desired, history=history, budget=Budget(cli_max=limit)))
    expected = estimate(
        plan, _inputs(desired, history=history, budget=Budget(cli_max=limit, compare="expected"))
    )
    assert worst.refusals and "over --max-cost of $0.01" in worst.refusals[0]
    assert worst.actions[0].over_budget == "part of a plan over --max-cost"
    assert not expected.refusals


def test_the_project_budget_holds_the_plans_total() -> None:
    plan, desired = _plan(_job("a"), _job("b"))
    one = estimate(plan, _inputs(desired)).actions[0].cost_worst
    assert one is not None
    within = estimate(plan, _inputs(desired, budget=Budget(project_max=one * 2.5)))
    over = estimate(plan, _inputs(desired, budget=Budget(project_max=one * 1.5)))
    assert not within.refusals
    assert "project budget" in over.refusals[0] and all(c.over_budget for c in over.actions)


def test_a_budget_refuses_a_cost_it_cannot_check() -> None:
    plan, desired = _plan(_job(params={"temperature": 0.0}))  # no maxTokens: unbounded output
    report = estimate(plan, _inputs(desired, budget=Budget(cli_max=1000.0)))
    assert report.refusals and "set inferenceParameters.maxTokens" in report.refusals[0]
    unbudgeted = estimate(plan, _inputs(desired))
    assert not unbudgeted.refusals and unbudgeted.cost_worst is None


def test_no_action_that_sends_rows_no_cost() -> None:
    plan, desired = _plan(_job())
    downloads_only = dataclasses.replace(
        plan, actions=tuple(a for a in plan.actions if a.kind is Kind.CREATE_DATASET)
    )
    report = estimate(downloads_only, _inputs(desired, budget=Budget(cli_max=0.000001)))
    assert report.actions == () and not report.refusals


def test_cost_appears_in_json_and_markdown() -> None:
    plan, desired = _plan(_job(max_cost=0.01))
    costed = dataclasses.replace(plan, cost=estimate(plan, _inputs(desired)))
    body = plan_json(costed)["cost"]
    assert body["total"]["outputTokensWorstCase"] == 200_000
    assert body["actions"][0]["overBudget"] and body["refusals"]
    assert body["actions"][0]["price"]["input"] == 0.10
    md = plan_markdown(costed)
    assert "| `j` | 1,000 | 47,000 |" in md and "Refused by a budget" in md


def test_the_shipped_table_is_dated_and_sourced_and_the_project_file_overrides_it() -> None:
    table = shipped_prices()
    for models in table.prices.values():
        for price in models.values():
            assert price.as_of and price.source.startswith("https://")
    fw = "fireworks"
    assert table.lookup("llama-v3p1-8b-instruct", fw) == table.lookup(MODEL, fw) is not None
    ours = Price(input=0.01, output=0.02, source="our contract")
    assert table.with_overrides((PriceOverride(MODEL, fw, ours),)).lookup(MODEL, fw) == ours
    assert table.lookup("no-such-model", fw) is None


def test_money_text_never_shows_an_unknown_as_zero() -> None:
    assert money_text(None) == "unknown"
    assert money_text(0.0042) == "$0.0042" and money_text(1234.5) == "$1,234.50"
    assert money_text(0.00004) == "<$0.0001" and money_text(0.0) == "$0.00"


def test_jobs_sharing_a_dataset_and_model_keep_their_own_figures() -> None:
    """The figures are computed once per (dataset, model, maxTokens, n) in a plan: jobs that
    differ in any of those, or have their own history, never share them."""
    jobs = [
        _job("a"),
        _job("b"),
        _job("c", params={"maxTokens": 10}),
        _job("d", params={"maxTokens": 100, "n": 3}),
        _job("e"),
    ]
    plan, desired = _plan(*jobs)
    history = {"e": Usage(rows=10, prompt_tokens=470, completion_tokens=250)}
    costs = {c.job: c for c in estimate(plan, _inputs(desired, history=history)).actions}
    assert [costs[n].output_worst for n in "abcde"] == [200_000, 200_000, 10_000, 300_000, 200_000]
    assert [costs[n].expected_from for n in "abcde"] == ["worst case"] * 4 + ["history"]
    assert costs["e"].output_expected == 25 * 1000
    assert [costs[n].job for n in "abcde"] == list("abcde")
    assert len({costs[n].remote_id for n in "abcde"}) == 5


def test_the_expected_output_is_never_above_the_worst_case() -> None:
    """History from a run with a higher maxTokens (or a larger n) must not make the expected
    figure exceed what the new settings can produce at most."""
    plan, desired = _plan(_job(params={"maxTokens": 10}))
    history = {"j": Usage(rows=10, prompt_tokens=470, completion_tokens=1000)}  # 100 a row
    [cost] = estimate(plan, _inputs(desired, history=history)).actions
    assert cost.output_worst == 10 * 1000
    assert cost.output_expected == cost.output_worst and cost.expected_from == "history"
    assert cost.cost_expected == cost.cost_worst
