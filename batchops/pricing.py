"""The plan's cost inputs, read from disk: which rows each action sends, and their tokens.

``plan_cost`` is what ``batchops.reconcile`` calls after planning: it counts the input tokens of
the datasets the plan's actions send (once per content: the token cache, so a plan with nothing
to send reads nothing), and of the file of exactly the rows an action sends when it has one (the
new rows of a job reusing others, a canary's sample), bounds the rows of waiting pipeline stages,
and hands everything to ``batchops.cost.estimate`` (pure).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from batchops.cost import SENDS_ROWS, CostInputs, estimate, rows_at_most
from batchops.manifest.desired import Desired
from batchops.money import Budget, CostReport, PriceTable
from batchops.plan import Action, DatasetFacts, Kind, Plan
from batchops.plan.rows import DerivedInput, RowSplit
from batchops.results import LocalResult
from batchops.tokencache import TokenCache, dataset_tokens, file_tokens


class CostOptions(Protocol):
    """What the cost step reads of ``reconcile.PassOptions``."""

    @property
    def prices(self) -> PriceTable: ...
    @property
    def budget(self) -> Budget: ...
    @property
    def tokenizers(self) -> Mapping[str, Path]: ...


def plan_cost(
    plan: Plan,
    desired: Desired,
    infos: Mapping[str, DatasetFacts],
    local: Mapping[str, LocalResult],
    options: CostOptions,
    root: Path,
    splits: Mapping[str, RowSplit] | None = None,
) -> CostReport:
    """Tokens and dollars of the actions that send rows. Only their datasets are tokenized
    (once per content: the token cache), so a plan with nothing to send reads nothing. An
    action sending a file of its own (the new rows of a job reusing others, a canary's sample,
    from ``splits``) has exactly those rows counted."""
    jobs = {j.name: j for j in desired.jobs}
    actions = [a for a in plan.actions if a.kind in SENDS_ROWS and a.resource.name in jobs]
    sending = [jobs[a.resource.name] for a in actions]
    cache = TokenCache(root)  # read once (if at all) for the datasets and the files sent
    tokenizers = options.tokenizers
    tokens = dataset_tokens(sending, infos, root=root, tokenizers=tokenizers, cache=cache)
    own = [(a, _sent_file(a, (splits or {}).get(a.resource.name))) for a in actions]
    sent = file_tokens(
        ((a.resource.remote_id, jobs[a.resource.name].model, f) for a, f in own if f is not None),
        tokenizers=tokenizers,
        cache=cache,
    )
    cache.save()
    history = {
        name: r.record.usage
        for name, r in local.items()
        if r.record is not None and r.record.usage is not None
    }
    rows = {name: info.rows for name, info in infos.items()}
    waits = [
        jobs[a.resource.name]
        for a in plan.actions
        if a.kind is Kind.WAITS and a.resource.name in jobs
    ]
    read = {j.input_dataset for j in waits if j.input_dataset is not None}
    waiting = rows_at_most(read, desired, rows) if read else {}
    inputs = CostInputs(
        jobs, rows, tokens, history, options.prices, options.budget, waiting, sent=sent
    )
    return estimate(plan, inputs)


def _sent_file(action: Action, split: RowSplit | None) -> DerivedInput | None:
    """The file of exactly the rows ``action`` sends, when it has one of its own."""
    if split is None or (
        action.kind is not Kind.CREATE_JOB and action.kind is not Kind.REPLACE_JOB
    ):
        return None
    sample = split.canary.input if split.canary is not None else None
    found = sample if action.details.get("canary") else split.derived
    return found if found is not None and found.rows == action.rows_to_send else None
