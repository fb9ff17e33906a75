"""Ownership and identity of OpenAI batches through their ``metadata`` (server-assigned IDs).

Every batch batchops creates carries (keys <= 64, values <= 512 characters, <= 16 pairs):

  batchops.project  the project (the ownership mark: pruning touches only these)
  batchops.job      the manifest name of the job
  batchops.key      the job's content-addressed ID (changes when anything computed changes)
  batchops.part     ``i/n``: which part of a split dataset (``parts``)
  batchops.attempt  0 for the first submission, n for the n-th resume after expiry
  batchops.tokens   estimated enqueued input tokens (the quota waves count them)
  batchops.rows     requests in the batch
  batchops.input    our key of the dataset it reads (inputs are found through their batches)
  batchops.model    the model (the enqueued-token quota is per model)
  batchops.from     the job key this one continues after an expiry (the lineage)
  batchops.params   the job's inference parameters (canonical JSON, manifest form), when they
                    fit in a value: the reuse index is rebuilt from them (``inputs``)

Input files carry no metadata: a file is ours when one of our batches uses it.

Concurrent applies can both create a batch for one slot (key, part, attempt). ``duplicates``
keeps the oldest live one (created_at, then ID: every machine picks the same) and names the
others for cancelling; a slot that already has a finished batch keeps that one.
Called by ``runner``; pure.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from batchops.providers.openai.states import is_live, neutral_state
from batchops.providers.openai.wire import Batch

PREFIX = "batchops."
PROJECT, JOB, KEY, PART, ATTEMPT, TOKENS, ROWS, INPUT, FROM, MODEL, PARAMS = (
    f"{PREFIX}{n}"
    for n in (
        "project",
        "job",
        "key",
        "part",
        "attempt",
        "tokens",
        "rows",
        "input",
        "from",
        "model",
        "params",
    )
)
MAX_VALUE = 512  # characters in a metadata value (the API's cap)


@dataclass(frozen=True, order=True)
class Slot:
    """What one batch is for: a job's content key, one part of it, one attempt."""

    key: str
    part: int
    parts: int
    attempt: int


def metadata(
    project: str,
    job: str,
    slot: Slot,
    *,
    tokens: int,
    rows: int,
    input_key: str,
    model: str,
    continued_from: str | None,
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    meta = {
        PROJECT: project,
        JOB: job,
        KEY: slot.key,
        PART: f"{slot.part + 1}/{slot.parts}",
        ATTEMPT: str(slot.attempt),
        TOKENS: str(tokens),
        ROWS: str(rows),
        INPUT: input_key,
        MODEL: model[:MAX_VALUE],
    }
    if continued_from:
        meta[FROM] = continued_from
    params = orjson.dumps(dict(parameters or {}), option=orjson.OPT_SORT_KEYS).decode()
    if parameters is not None and len(params) <= MAX_VALUE:
        meta[PARAMS] = params
    return meta


def input_of(batch: Batch) -> str | None:
    return (batch.metadata or {}).get(INPUT)


def parameters_of(batch: Batch) -> dict[str, Any]:
    """The job's inference parameters (manifest form) from ``batchops.params``; {} without."""
    raw = (batch.metadata or {}).get(PARAMS)
    return _parameters(raw) if raw else {}


@functools.lru_cache(maxsize=1024)
def _parameters_cached(raw: str) -> tuple[tuple[str, Any], ...]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ()
    return tuple(value.items()) if isinstance(value, dict) else ()


def _parameters(raw: str) -> dict[str, Any]:
    return dict(_parameters_cached(raw))


def is_ours(batch: Batch, project: str) -> bool:
    return (batch.metadata or {}).get(PROJECT) == project


def slot_of(batch: Batch) -> Slot | None:
    """The slot a batch fills, or None when its metadata is not ours or is malformed."""
    meta = batch.metadata
    if not meta:
        return None
    return _slot(meta.get(KEY), meta.get(PART), meta.get(ATTEMPT))


@functools.lru_cache(maxsize=16_384)
def _slot(key: str | None, part: str | None, attempt: str | None) -> Slot | None:
    """Parsed once per distinct metadata: a pass asks for every batch's slot several times."""
    if key is None or part is None or attempt is None:
        return None
    try:
        number, total = (int(x) for x in part.split("/"))
        return Slot(key, number - 1, total, int(attempt))
    except ValueError:
        return None


def tokens_of(batch: Batch) -> int:
    try:
        return int((batch.metadata or {}).get(TOKENS, "0"))
    except ValueError:
        return 0


def _age(batch: Batch) -> tuple[int, str]:
    return batch.created_at, batch.id


def keeper(batches: Iterable[Batch]) -> Batch | None:
    """The batch a slot keeps: the oldest finished one, else expired, else live, else the
    latest that failed or was cancelled (it says why the slot is not done)."""
    candidates = sorted(batches, key=_age)
    for wanted in ("finished", "expired", "live"):
        for batch in candidates:
            state = neutral_state(batch.status)
            if (wanted == "live" and is_live(batch.status)) or state == wanted:
                return batch
    return candidates[-1] if candidates else None


def duplicates(batches: Iterable[Batch]) -> list[tuple[Batch, Batch]]:
    """(duplicate to cancel, the batch kept) for every live batch that is not its slot's keeper."""
    by_slot: dict[Slot, list[Batch]] = defaultdict(list)
    for batch in batches:
        slot = slot_of(batch)
        if slot is not None:
            by_slot[slot].append(batch)
    found: list[tuple[Batch, Batch]] = []
    for slot in sorted(by_slot):
        kept = keeper(by_slot[slot])
        for batch in sorted(by_slot[slot], key=_age):
            stopping = batch.status.lower() == "cancelling"  # cancelled already, by a pass
            if kept is not None and batch.id != kept.id and is_live(batch.status) and not stopping:
                found.append((batch, kept))
    return found
