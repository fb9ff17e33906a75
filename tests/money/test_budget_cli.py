"""Budgets end to end: plan shows cost, apply refuses over budget (exit 4) and sends nothing,
results record their usage, status shows the spend, watch waits for the next change."""

from __future__ import annotations

import json
import logging
import random
import threading
from pathlib import Path

import pytest

from batchops.errors import EXIT_REFUSED, BudgetError
from batchops.watch.loop import Daemon, Outcome, PassRecord, Timing
from tests.conftest import FakeResult
from tests.e2e import test_apply_cli as e2e
from tests.e2e.test_apply_cli import WAIT, InProcess, make_repo

pytestmark = [pytest.mark.e2e]
inproc = e2e.inproc  # the CLI in this process against a real server on a loopback socket

PRICED = "accounts/fireworks/models/llama-v3p1-8b-instruct"


def _priced_repo(tmp_path: Path, **job: object) -> Path:
    return make_repo(tmp_path, jobs={"answers": {"model": PRICED, **job}})


def _server_jobs(inproc: InProcess) -> list[str]:
    with inproc.client() as client:
        return [j.name or "" for j in client.list_jobs()]


def test_apply_over_max_cost_shows_the_plan_refuses_and_sends_nothing(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = _priced_repo(tmp_path)
    refused = inproc(root, "apply", "--max-cost", "0.000001")
    assert refused.returncode == EXIT_REFUSED == 4
    assert "OVER BUDGET: part of a plan over --max-cost" in refused.stdout
    assert "refused, nothing was sent" in refused.stderr
    assert _server_jobs(inproc) == []
    with inproc.client() as client:
        assert list(client.list_datasets()) == []  # not even the dataset was uploaded
    assert inproc(root, "apply", "--max-cost", "$5").returncode == 0
    assert len(_server_jobs(inproc)) == 1


def test_a_jobs_own_budget_in_its_manifest_refuses(tmp_path: Path, inproc: InProcess) -> None:
    # worst case: 100,000 tokens x 12 rows at $0.10 a million, $0.12
    root = _priced_repo(
        tmp_path, budget={"maxCost": 0.05}, inferenceParameters={"maxTokens": 100_000}
    )
    plan = inproc(root, "plan", "--output", "json")
    assert plan.returncode == 4
    cost = json.loads(plan.stdout)["cost"]
    assert cost["actions"][0]["overBudget"].startswith("job answers:")
    assert inproc(root, "apply").returncode == 4 and _server_jobs(inproc) == []


def test_the_project_files_budget_and_prices(tmp_path: Path, inproc: InProcess) -> None:
    root = _priced_repo(tmp_path)
    (root / "batchops.yaml").write_text(
        "apiVersion: batchops/v1\nkind: Project\nmetadata: {name: money}\nspec:\n"
        "  budget: {maxCost: 1.0, compare: expected}\n"
        f"  prices:\n  - {{model: {PRICED}, input: 1000000, output: 0, source: ours}}\n"
    )  # a dollar a token: 12 rows cost far more than $1
    refused = inproc(root, "apply")
    assert refused.returncode == 4, refused.stderr
    assert "over the project budget (batchops.yaml budget.maxCost) of $1.00" in refused.stderr
    assert _server_jobs(inproc) == []


def test_plan_json_and_step_summary_show_cost_unknown_without_a_price(
    tmp_path: Path, inproc: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(tmp_path)  # model .../m has no price
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("CI", "")
    done = inproc(root, "plan", "--output", "json", "--local")
    assert done.returncode == 0, done.stderr
    cost = json.loads(done.stdout)["cost"]
    assert cost["actions"][0]["rows"] == 12 and cost["actions"][0]["inputTokens"] > 12
    assert cost["total"]["costWorstCase"] is None and cost["total"]["outputTokensWorstCase"] == 384
    assert "| `answers` | 12 |" in summary.read_text()


def test_results_record_usage_and_status_shows_the_spend_and_history_is_used(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = _priced_repo(tmp_path)
    assert inproc(root, *WAIT).returncode == 0
    status = inproc(root, "status", "--output", "json")
    [job] = json.loads(status.stdout)["jobs"]
    assert job["spent"] is not None and job["spent"] > 0
    described = json.loads(inproc(root, "describe", "answers", "--output", "json").stdout)
    assert described["spent"] == job["spent"]
    # A changed spec: the expected output now comes from the first run's usage.
    (root / "jobs" / "work.yaml").write_text(
        (root / "jobs" / "work.yaml").read_text().replace('"maxTokens": 32', '"maxTokens": 64')
    )
    plan = json.loads(inproc(root, "plan", "--output", "json").stdout)["cost"]["actions"][0]
    assert plan["expectedFrom"] == "history"
    assert plan["outputTokensExpected"] < plan["outputTokensWorstCase"]


def test_watch_refuses_over_budget_and_tries_again_on_the_next_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = threading.Event()
    waits: list[tuple[float | None, bool]] = []
    script = [frozenset({"file"})]

    class Triggers:
        def wait(self, timeout: float | None, *, wake_on_trigger: bool = True) -> frozenset[str]:
            waits.append((timeout, wake_on_trigger))
            if not script:
                stop.set()
                return frozenset()
            return script.pop(0)

    def over() -> FakeResult:
        raise BudgetError(("the plan costs $9.00 (worst case), over --max-cost of $1.00",))

    steps = [over, FakeResult]
    records: list[PassRecord] = []
    caplog.set_level(logging.INFO, logger="batchops.watch")
    Daemon(
        run_pass=lambda: steps.pop(0)(),
        triggers=Triggers(),
        stop=stop,  # type: ignore[arg-type]
        timing=Timing(),
        rng=random.Random(1),
        on_pass=records.append,
    ).run()
    assert [r.outcome for r in records] == [Outcome.REFUSED, Outcome.OK]
    assert waits[0] == (None, True)  # no timer: the next edit
    assert any("over --max-cost of $1.00" in m for m in caplog.messages)
