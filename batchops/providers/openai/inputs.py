"""A job's input read back from the provider, as the provider-neutral rows it was rendered from.

Used by ``OpenAIProvider.download_input`` (the reuse index is rebuilt from the inputs and outputs
of finished jobs when ``.batchops/`` is empty: ``batchops.reuse_rows.rebuild``). An input file's
line is ``{"custom_id", "method", "url", "body": {"model", **parameters, **row body}}``
(``lines.request_line``); the neutral row is ``{"custom_id", "body": row body}``: the model goes,
and so does every parameter the job's metadata declares, when the line holds the job's value (a
row's own value for the same key stays). An ambiguous line gives a different hash: a missed
reuse, never a stale one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from batchops.providers.openai import ownership as own
from batchops.providers.openai.lines import RequestShape
from batchops.providers.openai.wire import Batch


def first_attempt_parts(batches: Iterable[Batch], input_key: str) -> dict[int, Batch] | None:
    """Part index -> a first-attempt batch of the first job (by key) that read ``input_key``,
    or None when that job's parts are not all there (a resume's file holds only the rows still
    to run, so only first attempts hold the whole input)."""
    by_key: dict[str, dict[int, Batch]] = {}
    total: dict[str, int] = {}
    for batch in sorted(batches, key=lambda b: (b.created_at, b.id)):
        slot = own.slot_of(batch)
        if slot is None or slot.attempt or own.input_of(batch) != input_key:
            continue
        by_key.setdefault(slot.key, {}).setdefault(slot.part, batch)
        total[slot.key] = slot.parts
    for key in sorted(by_key):
        if len(by_key[key]) == total[key]:
            return by_key[key]
    return None


def shape_of(batch: Batch) -> RequestShape:
    """The model and body parameters the batch's lines were rendered with (its metadata)."""
    return RequestShape.from_manifest(batch.model or "", own.parameters_of(batch))


def neutral_row(line: Mapping[str, Any], shape: RequestShape) -> dict[str, Any]:
    body = dict(line.get("body") or {})
    body.pop("model", None)
    for name, value in shape.params.items():
        if name in body and body[name] == value:
            del body[name]
    return {"custom_id": line.get("custom_id"), "body": body}


def neutral_lines(raw: Iterable[bytes], shape: RequestShape) -> Iterator[bytes]:
    for line in raw:
        if line.strip():
            yield orjson.dumps(neutral_row(orjson.loads(line), shape)) + b"\n"


def write_neutral(source: Path, target: Path, shape: RequestShape) -> Path:
    """``source`` (an input file as uploaded) rewritten as neutral rows into ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as src, target.open("wb") as out:
        out.writelines(neutral_lines(src, shape))
    return target
