"""A pipeline's next stage and money: the plan says what it cannot price yet (a stage waiting on
its upstream), and the pass of `apply --wait` that plans it shows its cost and holds it to the
budgets, sending nothing of it when it is over (issues 15 and 16)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from batchops.cost import rows_at_most
from batchops.errors import EXIT_REFUSED, BudgetError
from batchops.manifest.desired import DatasetDecl, Desired, JobDecl, Source, SourceDecl
from batchops.providers.fireworks.provider import FireworksProvider as FP
from batchops.watch.service import WatchConfig, _pass_function
from tests.e2e import test_apply_cli as e2e
from tests.e2e.test_apply_cli import InProcess
from tests.pipelines.test_chain_e2e import PIPELINE, write_repo

pytestmark = [pytest.mark.e2e]
inproc = e2e.inproc  # the CLI in this process against a real server on a loopback socket

WAIT = ("apply", "--wait", "--timeout", "60", "--poll-interval", "0.2")
PROMPTS = {"a": "one", "b": "two", "c": "three"}
PRICES = """\
apiVersion: batchops/v1
kind: Project
metadata: {name: money}
spec:
  prices:
    - {model: accounts/fireworks/models/alpha, input: 1, output: 1, source: test}
    - {model: accounts/fireworks/models/beta, input: 1, output: 1, source: test}
    - {model: accounts/fireworks/models/judge, input: 1, output: 1, source: test}
"""


def _repo(root: Path, *, judge_budget: float | None = None) -> Path:
    pipeline = PIPELINE
    if judge_budget is not None:
        pipeline = pipeline.replace(
            "  model: accounts/fireworks/models/judge\n",
            f"  model: accounts/fireworks/models/judge\n  budget: {{maxCost: {judge_budget}}}\n",
        )
    write_repo(root, PROMPTS, pipeline)
    (root / "batchops.yaml").write_text(PRICES)
    return root


def _server_names(inproc: InProcess) -> tuple[list[str], list[str]]:
    with inproc.client() as client:
        jobs = [(j.name or "").rsplit("/", 1)[-1] for j in client.list_jobs()]
        datasets = [(d.name or "").rsplit("/", 1)[-1] for d in client.list_datasets()]
    return jobs, datasets


def test_the_plan_says_a_waiting_stage_is_not_priced_yet_with_its_bounds(
    tmp_path: Path, inproc: InProcess
) -> None:
    root = _repo(tmp_path / "repo")
    done = inproc(root, "plan", "--output", "json")
    assert done.returncode == 0, done.stderr
    cost = json.loads(done.stdout)["cost"]
    waiting = {w["job"]: w for w in cost["waiting"]}
    assert sorted(waiting) == ["judge-alpha", "judge-beta"]
    judge = waiting["judge-alpha"]
    assert judge["waitsOn"] == ["generate"] and judge["costWorstCase"] is None
    # one row per answered upstream row at most; maxTokens 64 x n 1 x those rows
    assert (judge["rowsAtMost"], judge["outputTokensWorstCaseAtMost"]) == (3, 3 * 64)
    assert judge["inputTokens"] is None  # no figure made up for text not rendered yet
    assert cost["total"]["waitingNotCounted"] == 2
    text = inproc(root, "plan").stdout
    assert (
        "  … judge-alpha: waits on generate; cost not known until it is planned (at most 3 "
        "rows, at most 192 output tokens); its budgets are checked then" in text
    )
    assert "Not counted: 2 jobs waiting on an upstream stage, priced when planned." in text


def test_apply_wait_shows_the_next_stages_cost_when_it_plans_it(
    tmp_path: Path, inproc: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _repo(tmp_path / "repo")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    done = inproc(root, *WAIT, "--max-cost", "1000")
    assert done.returncode == 0, done.stderr
    later = done.stdout.split("Plan: ", 1)[1]  # what the passes after the first printed
    assert "  $ judge-alpha [judge-alpha-" in later and "  $ judge-beta [judge-beta-" in later
    assert "### batchops apply, pass " in summary.read_text()
    assert "| `judge-alpha` | 3 |" in summary.read_text()


def test_apply_wait_json_has_every_passes_cost(tmp_path: Path, inproc: InProcess) -> None:
    root = _repo(tmp_path / "repo")
    done = inproc(root, *WAIT, "--output", "json")
    assert done.returncode == 0, done.stderr
    costs = json.loads(done.stdout)["costs"]
    by_pass = {c["pass"]: sorted(a["job"] for a in c["actions"]) for c in costs}
    assert by_pass[1] == ["generate-alpha", "generate-beta"]
    assert ["judge-alpha", "judge-beta"] in [v for k, v in by_pass.items() if k > 1]


def test_a_budget_the_next_stage_breaks_stops_it_under_apply_wait(
    tmp_path: Path, inproc: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _repo(tmp_path / "repo", judge_budget=0.0001)  # 192 output tokens alone: $0.0002
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    refused = inproc(root, *WAIT)
    assert refused.returncode == EXIT_REFUSED == 4, refused.stderr
    assert "OVER BUDGET: job judge-alpha:" in refused.stdout.split("Plan: ", 1)[1]
    assert "refused, nothing was sent: job judge-alpha:" in refused.stderr
    jobs, datasets = _server_names(inproc)
    assert sorted(j.rsplit("-", 1)[0] for j in jobs) == ["generate-alpha", "generate-beta"]
    assert not [d for d in datasets if d.startswith("judged")]
    assert not [d for d in datasets if d.startswith("judged")]  # nothing of the stage sent
    assert "refused by a budget, exit 4" in summary.read_text()


def _chained(name: str, upstream: tuple[str, ...], limit: int | None = None) -> DatasetDecl:
    render = SourceDecl(path="", files=(), format="jsonl", parts=(), upstream=upstream, limit=limit)
    return DatasetDecl(name=name, path="", files=(), source=Source("x"), render=render)


def _reader(name: str, dataset: str | None) -> JobDecl:
    return JobDecl(name=name, model="m", source=Source("x"), input_dataset=dataset)


def test_a_waiting_datasets_rows_are_bounded_by_its_upstreams_inputs() -> None:
    desired = Desired(
        root=Path("/r"),
        datasets=(DatasetDecl(name="q", path="q", files=(), source=Source("x")),),
        jobs=(
            _reader("gen-a", "q"),
            _reader("gen-b", "q"),
            _reader("judge", "pairs"),
            _reader("remote", None),
        ),
        pending=(
            _chained("pairs", ("gen-a", "gen-b")),  # combine: all, one input: at most its rows
            _chained("top", ("judge",), limit=5),
            _chained("few", ("judge",), limit=500),
            _chained("far", ("remote",)),  # a remote-only input: no bound known
            _chained("far-limited", ("remote",), limit=7),
        ),
    )
    rows = {"q": 40, "pairs": 999}  # a chained dataset's earlier rendering is no bound
    names = ["q", "pairs", "top", "few", "far", "far-limited"]
    assert rows_at_most(names, desired, rows) == {
        "q": 40,
        "pairs": 40,
        "top": 5,
        "few": 40,
        "far": None,
        "far-limited": 7,
    }


def test_watch_logs_the_next_stages_cost_and_refuses_it_over_its_budget(
    tmp_path: Path, inproc: InProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon's passes, as `watch` runs them: the pass that plans the judge logs its cost
    lines, marked over budget, before it is refused; nothing of it is sent."""
    root = _repo(tmp_path / "repo", judge_budget=0.0001)
    stop = threading.Event()
    config = WatchConfig(paths=(Path("jobs"),), root=root, project="money")
    with inproc.client() as client:
        one_pass = _pass_function(config, [root / "jobs"], root, FP(client), stop, None, None)
        caplog.set_level(logging.INFO, logger="batchops.watch")
        for _ in range(200):
            try:
                one_pass()
            except BudgetError:
                break
            threading.Event().wait(0.05)
        else:
            raise AssertionError("the judge was never planned")
    logged = [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "cost"]
    assert any(m.startswith("$ generate-alpha [") for m in logged)  # the first pass's cost
    assert any(m.startswith("$ judge-alpha [") and "OVER BUDGET" in m for m in logged)
    jobs, datasets = _server_names(inproc)
    assert sorted(j.rsplit("-", 1)[0] for j in jobs) == ["generate-alpha", "generate-beta"]
    assert not [d for d in datasets if d.startswith("judged")]
