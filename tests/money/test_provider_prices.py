"""Prices are looked up under each job's provider (issue 15): its kind's shipped prices, and a
declared provider's own `prices` entries over them; never under `fireworks` for every job."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from batchops.cli import main
from batchops.config import price_table
from batchops.cost import CostInputs, estimate
from batchops.errors import InvalidInputError
from batchops.local.server import EmbeddedServer
from batchops.manifest import load_desired
from batchops.manifest.desired import DatasetDecl, Desired, JobDecl, Source
from batchops.manifest.project import load_project
from batchops.money import Budget, Price, PriceOverride, PriceTable, money_text, shipped_prices
from batchops.plan import Observed, PlanOptions, make_plan
from batchops.results import local_records
from batchops.tokencache import DatasetTokens, Tally
from batchops.tokens import OPENAI

ROOT = Path("/repo")
FW = Price(input=0.10, output=0.20)
OAI = Price(input=1.0, output=4.0)
LAB = Price(input=7.0, output=9.0)


def table() -> PriceTable:
    prices = {"fireworks": {"m": FW}, "openai": {"gpt-x": OAI}, "lab": {"own": LAB}}
    return PriceTable(prices, kinds={"fireworks": "fireworks", "oai": "openai", "lab": "openai"})


def test_a_price_is_found_under_the_providers_kind_and_its_own_entries_first() -> None:
    prices = table()
    assert prices.lookup("gpt-x", "oai") == OAI  # a declared openai provider: openai's prices
    assert prices.lookup("gpt-x", "openai") == OAI
    assert prices.lookup("own", "lab") == LAB  # its own entry
    assert prices.lookup("own", "oai") is None  # ... which no other provider of the kind sees
    assert prices.lookup("gpt-x", "fireworks") is None  # never another kind's price
    assert prices.lookup("m", "oai") is None
    assert prices.lookup("gpt-x", "undeclared") is None  # unknown, never $0


def test_a_named_providers_entry_overrides_its_kinds_price() -> None:
    ours = Price(input=0.5, output=0.5, source="our contract")
    prices = table().with_overrides((PriceOverride("gpt-x", "lab", ours),))
    assert prices.lookup("gpt-x", "lab") == ours and prices.lookup("gpt-x", "oai") == OAI


def test_the_shipped_table_prices_the_openai_examples_models() -> None:
    shipped = shipped_prices()
    for model in ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o3", "o4-mini"):
        price = shipped.lookup(model, "openai")
        assert price is not None and price.input > 0 and price.output > 0, model
        assert price.as_of and price.source.startswith("https://"), model
        assert shipped.lookup(model, "fireworks") is None  # not a Fireworks model


def _job(name: str, model: str, provider: str, max_cost: float | None = None) -> JobDecl:
    return JobDecl(
        name=name,
        model=model,
        source=Source("jobs/a.yaml"),
        input_dataset="d",
        inference_parameters={"maxTokens": 10},
        provider=provider,
        max_cost=max_cost,
        output_path=ROOT / "results" / f"{name}.jsonl",
        output_display="r",
    )


class Facts:
    sha256, rows, size = "a" * 64, 100, 100


def test_the_plan_prices_each_action_under_its_jobs_provider_and_checks_its_budget() -> None:
    jobs = (
        _job("a", "gpt-x", "oai", max_cost=1.0),
        _job("b", "own", "lab"),
        _job("c", "gpt-x", "fireworks"),
    )
    ds = DatasetDecl(name="d", path="d.jsonl", files=(ROOT / "d.jsonl",), source=Source("x"))
    desired = Desired(root=ROOT, datasets=(ds,), jobs=jobs)
    plan = make_plan(desired, {"d": Facts()}, Observed(), {}, PlanOptions(), project="p")
    tokens = {
        ("d", j.model): DatasetTokens(Tally(100, 100, 1000), "o200k_base", True, OPENAI)
        for j in jobs
    }
    inputs = CostInputs(
        jobs={j.name: j for j in jobs},
        rows={"d": 100},
        tokens=tokens,
        history={},
        prices=table(),
        budget=Budget(),
    )
    report = estimate(plan, inputs)
    costs = {c.job: c for c in report.actions}
    assert (costs["a"].price, costs["a"].provider) == (OAI, "oai")
    assert costs["b"].price == LAB and costs["c"].price is None
    input_tokens = costs["a"].input_tokens
    assert input_tokens is not None
    assert costs["a"].cost_worst == pytest.approx((input_tokens * 1.0 + 1000 * 4.0) / 1e6)
    assert not report.refusals  # a's budget is checked against a known figure
    assert report.job_price("a") == OAI and report.job_price("c") is None


PROJECT = """\
apiVersion: batchops/v1
kind: Project
metadata: {{name: p}}
spec:
  providers:
    lab: {{kind: openai, baseUrl: "{url}/v1"}}
  prices:
  - {{model: gpt-lab, provider: lab, input: 1000, output: 2000, source: ours}}
"""

MANIFESTS = """\
apiVersion: batchops/v1
kind: Dataset
metadata: {name: qs}
spec: {path: data/qs.jsonl}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: mini}
spec: {provider: lab, model: gpt-4o-mini, inputDataset: qs, inferenceParameters: {maxTokens: 8}}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: own}
spec: {provider: lab, model: gpt-lab, inputDataset: qs, inferenceParameters: {maxTokens: 8}}
---
apiVersion: batchops/v1
kind: BatchInferenceJob
metadata: {name: fw}
spec: {model: gpt-4o-mini, inputDataset: qs, inferenceParameters: {maxTokens: 8}}
"""


@pytest.fixture
def repo(
    tmp_path: Path, make_server: Callable[..., EmbeddedServer], monkeypatch: pytest.MonkeyPatch
) -> Path:
    server = make_server()
    root = tmp_path / "repo"
    (root / "jobs" / "data").mkdir(parents=True)
    rows = [
        {"custom_id": f"q{i}", "body": {"messages": [{"role": "user", "content": f"q {i}"}]}}
        for i in range(6)
    ]
    (root / "jobs" / "data" / "qs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "jobs" / "jobs.yaml").write_text(MANIFESTS)
    (root / "batchops.yaml").write_text(PROJECT.format(url=server.base_url))
    monkeypatch.setenv("FIREWORKS_BASE_URL", server.base_url)
    monkeypatch.setenv("FIREWORKS_ACCOUNT_ID", "local")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(root)
    return root


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    assert main([*args, "--output", "json"]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_every_surface_prices_a_job_under_its_provider(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mini = shipped_prices().lookup("gpt-4o-mini", "openai")
    assert mini is not None
    plan = _json(capsys, "plan")
    actions = {a["job"]: a for a in plan["cost"]["actions"]}  # type: ignore[index]
    assert actions["mini"]["provider"] == "lab" and actions["mini"]["price"]["input"] == mini.input
    assert actions["mini"]["costWorstCase"] is not None
    assert actions["own"]["price"]["input"] == 1000  # the named provider's own entry
    assert actions["fw"]["price"] is None and actions["fw"]["costWorstCase"] is None

    summary = repo / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert main(["plan", "--job", "mini"]) == 0  # the step summary's cost table
    [row] = [line for line in summary.read_text().splitlines() if line.startswith("| `mini` |")]
    assert "unknown" not in row and "$" in row
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")

    assert main(["plan", "--job", "mini", "--max-cost", "100"]) == 0  # checked, within budget
    assert main(["plan", "--job", "fw", "--max-cost", "100"]) == 4  # unknown: cannot be checked

    apply = ["apply", "--wait", "--timeout", "120", "--poll-interval", "0.1", "--auto-approve"]
    assert main(apply) == 0
    usage = local_records(repo)["mini"].usage
    assert usage is not None and usage.prompt_tokens > 0
    dollars = mini.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)

    status = {j["name"]: j for j in _json(capsys, "status")["jobs"]}  # type: ignore[attr-defined]
    assert status["mini"]["spent"] == pytest.approx(dollars)
    assert status["own"]["spent"] > 0 and status["fw"]["spent"] is None
    assert _json(capsys, "describe", "mini")["spent"] == pytest.approx(dollars)
    assert _json(capsys, "describe", "fw")["spent"] is None

    capsys.readouterr()
    assert main(["results", "mini", "fw"]) == 0
    out = capsys.readouterr().out
    assert f"mini spent: {money_text(dollars)} (" in out and money_text(dollars) != "unknown"
    assert "fw spent: unknown (no price for gpt-4o-mini;" in out


def test_a_price_under_an_undeclared_provider_is_a_project_file_error(tmp_path: Path) -> None:
    (tmp_path / "batchops.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: p}\nspec:\n"
        "  providers:\n    lab: {kind: openai}\n"
        "  prices:\n  - {model: m, provider: labb, input: 1, output: 1}\n"
    )
    with pytest.raises(InvalidInputError) as caught:
        load_project(tmp_path)
    [diag] = caught.value.diagnostics
    assert diag.line == 8 and "spec.prices[0].provider: unknown provider 'labb'" in diag.message
    assert "did you mean 'lab'?" in diag.message


def test_price_table_of_a_project_knows_its_providers_kinds(tmp_path: Path) -> None:
    (tmp_path / "batchops.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: p}\nspec:\n"
        "  providers:\n    lab: {kind: openai}\n"
    )
    project = load_project(tmp_path)
    assert price_table(project).lookup("gpt-4o-mini", "lab") is not None
    assert price_table(None).lookup("gpt-4o-mini", "openai") is not None


def test_jobs_sharing_dataset_model_and_parameters_keep_their_own_rows_to_send() -> None:
    """The figures shared per (dataset, model, provider, maxTokens, n) are shared only between
    jobs sending as many rows: one whose rows are partly reused (or a canary) has its own."""
    jobs = (_job("a", "gpt-x", "oai"), _job("b", "gpt-x", "oai"))
    ds = DatasetDecl(name="d", path="d.jsonl", files=(ROOT / "d.jsonl",), source=Source("x"))
    desired = Desired(root=ROOT, datasets=(ds,), jobs=jobs)
    plan = make_plan(desired, {"d": Facts()}, Observed(), {}, PlanOptions(), project="p")
    actions = tuple(
        dataclasses.replace(a, details={**a.details, "rowsToSend": 40})
        if a.resource.name == "b"
        else a
        for a in plan.actions
    )
    plan = dataclasses.replace(plan, actions=actions)
    tokens = {("d", "gpt-x"): DatasetTokens(Tally(100, 100, 1000), "o200k_base", True, OPENAI)}
    inputs = CostInputs(
        jobs={j.name: j for j in jobs},
        rows={"d": 100},
        tokens=tokens,
        history={},
        prices=table(),
        budget=Budget(),
    )
    costs = {c.job: c for c in estimate(plan, inputs).actions}
    assert (costs["a"].rows, costs["b"].rows) == (100, 40)
    assert (costs["a"].output_worst, costs["b"].output_worst) == (1000, 400)


def test_every_example_job_of_the_repository_has_a_price() -> None:
    """The examples in jobs/ (the OpenAI one included) show a cost, not `unknown`."""
    repo = Path(__file__).resolve().parents[2]
    project = load_project(repo)
    desired = load_desired([repo / "jobs"], root=repo, project=project)
    prices = price_table(project)
    assert any(j.provider != "fireworks" for j in desired.jobs)
    for job in desired.jobs:
        assert prices.lookup(job.model, job.provider) is not None, (job.name, job.provider)


def test_a_budget_refusal_names_the_provider_a_price_is_missing_on() -> None:
    jobs = (_job("a", "nope", "oai", max_cost=1.0),)
    ds = DatasetDecl(name="d", path="d.jsonl", files=(ROOT / "d.jsonl",), source=Source("x"))
    desired = Desired(root=ROOT, datasets=(ds,), jobs=jobs)
    plan = make_plan(desired, {"d": Facts()}, Observed(), {}, PlanOptions(), project="p")
    tokens = {("d", "nope"): DatasetTokens(Tally(100, 100, 1000), "o200k_base", True, OPENAI)}
    inputs = CostInputs(
        jobs={"a": jobs[0]},
        rows={"d": 100},
        tokens=tokens,
        history={},
        prices=table(),
        budget=Budget(),
    )
    [refusal] = estimate(plan, inputs).refusals
    assert "no price for nope on provider oai (add one under `prices`" in refusal
