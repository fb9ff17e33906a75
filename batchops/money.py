"""Prices, budgets and cost figures: the values money is computed from and reported in. Pure.

The shipped price table is package data (``batchops/data/prices.json``: per provider and model, the
batch price per million input, cached input and output tokens, each dated and with its source); the
project file's ``prices`` override it (``batchops.manifest.project``). ``batchops.cost`` computes a
plan's figures (``CostReport``) and the renderers print them. A price that is not known is None and
shown as unknown, never as zero. Imports nothing of ours: any layer may use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast

import msgspec

MILLION = 1_000_000
Compare = Literal["expected", "worstCase"]
_N = TypeVar("_N", int, float)
DEFAULT_PROVIDER = "fireworks"  # the local backend speaks Fireworks' API and bills like it


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens, for batch inference."""

    input: float
    output: float
    cached_input: float | None = None  # None: cached tokens cost the input price
    as_of: str = ""
    source: str = ""

    def cost(self, input_tokens: int, output_tokens: float, cached_tokens: int = 0) -> float:
        cached = self.input if self.cached_input is None else self.cached_input
        fresh = max(input_tokens - cached_tokens, 0)
        return (fresh * self.input + cached_tokens * cached + output_tokens * self.output) / MILLION


@dataclass(frozen=True)
class PriceTable:
    """provider -> model -> Price. A model is found by its full name or its last path segment
    (``llama-v3p1-8b-instruct`` for ``accounts/fireworks/models/llama-v3p1-8b-instruct``).

    The shipped table is keyed by provider *kind* (``fireworks``, ``openai``); the project file
    may add entries under a kind or under a declared provider's *name*. ``kinds`` maps each
    declared provider's name to its kind, so a job on provider ``together`` (kind ``openai``) is
    priced from ``together``'s own entries first, then from ``openai``'s."""

    prices: Mapping[str, Mapping[str, Price]]
    kinds: Mapping[str, str] = field(default_factory=dict)  # provider name -> kind

    def lookup(self, model: str, provider: str) -> Price | None:
        """``model``'s price on ``provider`` (a declared name or a kind); None: unknown."""
        key = (provider, model)
        memo = self._memo
        if key not in memo:  # a plan of 1,000 jobs asks about a handful of (provider, model)
            kind = self.kinds.get(provider, provider)
            found = self._find(model, provider)
            memo[key] = found if found is not None or kind == provider else self._find(model, kind)
        return memo[key]

    def _find(self, model: str, provider: str) -> Price | None:
        models = self.prices.get(provider, {})
        short = model.rsplit("/", 1)[-1]
        return models.get(model) or next(
            (p for m, p in models.items() if m.rsplit("/", 1)[-1] == short), None
        )

    @cached_property
    def _memo(self) -> dict[tuple[str, str], Price | None]:
        return {}

    def with_overrides(
        self, overrides: tuple[PriceOverride, ...], kinds: Mapping[str, str] | None = None
    ) -> PriceTable:
        """This table with the project file's entries over it; ``kinds``: the declared
        providers' kinds (kept from this table when not given)."""
        merged = {provider: dict(models) for provider, models in self.prices.items()}
        for o in overrides:
            merged.setdefault(o.provider, {})[o.model] = o.price
        return PriceTable(merged, self.kinds if kinds is None else kinds)


@dataclass(frozen=True)
class PriceOverride:
    """One ``prices`` entry of the project file."""

    model: str
    provider: str
    price: Price


def _price(entry: Mapping[str, Any]) -> Price:
    return Price(
        input=float(entry["input"]),
        output=float(entry["output"]),
        cached_input=None if entry.get("cachedInput") is None else float(entry["cachedInput"]),
        as_of=str(entry.get("asOf", "")),
        source=str(entry.get("source", "")),
    )


PRICES_FILE = Path(__file__).with_name("data") / "prices.json"


@cache
def shipped_prices() -> PriceTable:
    """The table shipped with batchops (read once per process)."""
    # Beside the code, as ``datasets.HELPER`` is: importlib.resources would import zipfile.
    text = PRICES_FILE.read_text(encoding="utf-8")
    data = json.loads(text)
    return PriceTable(
        {
            provider: {model: _price(entry) for model, entry in models.items()}
            for provider, models in data["providers"].items()
        }
    )


@dataclass(frozen=True)
class Budget:
    """Limits in US dollars. Each applies on its own: a job's to its actions, the project's and
    the command line's to the whole plan. ``compare`` says which figure is held against them."""

    project_max: float | None = None  # the project file's budget.maxCost
    cli_max: float | None = None  # --max-cost
    compare: Compare = "worstCase"
    job_max: Mapping[str, float] = field(default_factory=dict)  # job name -> spec.budget.maxCost

    @property
    def active(self) -> bool:
        return self.project_max is not None or self.cli_max is not None or bool(self.job_max)


class PricedJob(Protocol):
    """What a price is looked up by: a declared job's model and the provider it runs on."""

    @property
    def model(self) -> str: ...
    @property
    def provider(self) -> str: ...


# -- the figures -------------------------------------------------------------------------------


class ActionCost(msgspec.Struct, frozen=True, gc=False):
    """What one action that sends rows is expected to cost. Token and cost figures are None when
    unknown (rows of a remote-only dataset; a model with no price), never zero. A Struct: a plan
    of 1,000 jobs makes 1,000 of these, ten times faster than frozen dataclasses."""

    job: str
    remote_id: str
    model: str
    provider: str  # the provider the job runs on: its price is looked up under it
    rows: int | None  # rows to send (rows reused from earlier answers are not counted)
    input_tokens: int | None
    input_exact: bool
    output_expected: float | None
    output_worst: int | None
    expected_from: str  # "history" (mean of earlier runs) | "worst case"
    cost_expected: float | None
    cost_worst: float | None
    price: Price | None
    over_budget: str | None = None  # why this action breaks a budget

    def figure(self, compare: Compare) -> float | None:
        return self.cost_expected if compare == "expected" else self.cost_worst


class WaitingCost(msgspec.Struct, frozen=True, gc=False):
    """A job of a pipeline stage that waits on its upstream: not priced until it is planned (its
    rows and their text come from the upstream's answers), so not in the totals, and its budgets
    are checked then. What is known is an upper bound: its rows are at most its upstream's input
    rows (or the source's ``limit``), its output at most ``maxTokens`` x ``n`` x those rows."""

    job: str
    model: str
    provider: str
    waits_on: tuple[str, ...]
    blocked: bool  # an upstream failed: it waits until someone acts
    rows_at_most: int | None
    output_worst_at_most: int | None


@dataclass(frozen=True)
class CostReport:
    """The plan's cost: per action, the totals, and what breaks a budget."""

    actions: tuple[ActionCost, ...]
    compare: Compare = "worstCase"
    refusals: tuple[str, ...] = ()  # one sentence per broken budget; empty: within budget
    prices: PriceTable | None = None  # the table the figures come from
    jobs: Mapping[str, PricedJob] = field(default_factory=dict)  # the declared jobs, by name
    waiting: tuple[WaitingCost, ...] = ()  # not in the totals: priced when they are planned

    def job_price(self, job: str) -> Price | None:
        """The price of a declared job's model on its provider (what its spend so far is
        priced at)."""
        decl = self.jobs.get(job)
        if decl is None or self.prices is None:
            return None
        return self.prices.lookup(decl.model, decl.provider)

    @property
    def input_tokens(self) -> int | None:
        return _total(a.input_tokens for a in self.actions)

    @property
    def output_expected(self) -> float | None:
        return _total(a.output_expected for a in self.actions)

    @property
    def output_worst(self) -> int | None:
        return _total(a.output_worst for a in self.actions)

    @property
    def cost_expected(self) -> float | None:
        return _total(a.cost_expected for a in self.actions)

    @property
    def cost_worst(self) -> float | None:
        return _total(a.cost_worst for a in self.actions)

    @property
    def rows(self) -> int | None:
        return _total(a.rows for a in self.actions)

    @property
    def over_budget(self) -> bool:
        return bool(self.refusals)

    def by_remote_id(self) -> dict[str, ActionCost]:
        return {a.remote_id: a for a in self.actions}


def _total(values: Iterable[_N | None]) -> _N | None:
    """The sum, or None when any part is unknown (a total that leaves a part out would look
    cheaper than it is)."""
    total: Any = 0
    for v in values:
        if v is None:
            return None
        total += v
    return cast("_N", total)


class UsageLike(Protocol):
    """What we need of ``batchops.results.Usage``."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...


def spent(usage: UsageLike | None, price: Price | None) -> float | None:
    """What results cost, from the usage they reported; None when either is unknown."""
    if usage is None or price is None:
        return None
    return price.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)


def money_text(value: float | None) -> str:
    """$12.35, $0.0042 for small sums, <$0.0001 for a nonzero sum smaller still, 'unknown' for
    an unknown figure (never $0)."""
    if value is None:
        return "unknown"
    if value != 0 and round(abs(value), 4) == 0:
        return "<$0.0001"
    if value != 0 and abs(value) < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}"


def on_provider(provider: str) -> str:
    """' on provider X' after a model's name, or nothing for the default provider (Fireworks)."""
    return "" if provider == DEFAULT_PROVIDER else f" on provider {provider}"


def tokens_text(value: float | None) -> str:
    return "unknown" if value is None else f"{round(value):,}"
