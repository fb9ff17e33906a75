"""The daemon exports the spend of the results it merged as a Prometheus counter."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from prometheus_client import generate_latest

from batchops.apply import ApplyResult
from batchops.money import CostReport, Price, PriceTable
from batchops.plan import Plan
from batchops.reconcile import PassResult
from batchops.results import FileStamp, MergeCounts, ResultRecord, Usage, spend_added
from batchops.watch.health import Metrics
from batchops.watch.loop import Outcome, PassRecord
from batchops.watch.service import _observe

MODEL = "accounts/fireworks/models/x"


def _record(name: str, usage: Usage | None) -> ResultRecord:
    stamp = FileStamp("r.jsonl", 1, 1, "0" * 64)
    return ResultRecord(name, ("j",), stamp, stamp, MergeCounts(2, 2, 0, 0, 0), usage=usage)


@dataclass(frozen=True)
class Job:
    model: str
    provider: str = "fireworks"


def test_merged_results_add_their_cost_to_the_spend_counter() -> None:
    """Each job's spend is priced under its own provider: ``lab`` (kind openai) reads the
    openai prices; a Fireworks job on the same model name has no price, never OpenAI's."""
    prices = PriceTable(
        {
            "fireworks": {MODEL: Price(input=1.0, output=2.0)},
            "openai": {"gpt-x": Price(input=3.0, output=0.0)},
        },
        kinds={"fireworks": "fireworks", "lab": "openai"},
    )
    jobs = {"a": Job(MODEL), "b": Job("unpriced"), "o": Job("gpt-x", "lab"), "f": Job("gpt-x")}
    cost = CostReport((), prices=prices, jobs=jobs)
    million = Usage(rows=2, prompt_tokens=1_000_000, completion_tokens=0)
    added = {
        "a": Usage(rows=2, prompt_tokens=1_000_000, completion_tokens=500_000),
        "b": Usage(rows=2, prompt_tokens=10, completion_tokens=10),  # no price
        "o": million,  # $3 at the openai price
        "f": million,  # gpt-x has no Fireworks price: not counted
    }
    records = {name: _record(name, usage) for name, usage in added.items()}
    records["c"] = _record("c", None)  # no usage: nothing added
    applied = ApplyResult(records=records, spent=added)
    result = PassResult(Plan((), "fp", "p", cost=cost), [], True, applied=applied)
    metrics = Metrics()
    for _ in range(2):
        _observe(metrics, PassRecord(Outcome.OK, 0.1, frozenset(), 0.0, result, None))
    text = generate_latest(metrics.registry).decode()
    assert "batchops_spend_dollars_total 10.0" in text  # ($1 + $1 + $3) twice


def test_a_merge_adds_only_the_spend_its_record_did_not_have() -> None:
    """A row retry's merge adds the retried rows' spend, not the whole job's again; reused
    answers (another job's spend) never count."""
    before = _record("a", Usage(rows=10, prompt_tokens=1_000, completion_tokens=500))
    after = msgspec.structs.replace(
        before, spend=Usage(rows=12, prompt_tokens=1_300, completion_tokens=560)
    )
    assert spend_added(before, after) == Usage(rows=2, prompt_tokens=300, completion_tokens=60)
    assert spend_added(None, after) == after.spend
