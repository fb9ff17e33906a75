"""An OpenAI input line turned back into the neutral row it was rendered from (pure)."""

from __future__ import annotations

from batchops.providers.openai import ownership as own
from batchops.providers.openai.inputs import first_attempt_parts, neutral_row, shape_of
from batchops.providers.openai.lines import RequestShape, request_line
from batchops.providers.openai.wire import Batch


def test_a_rendered_line_gives_back_its_row() -> None:
    shape = RequestShape.from_manifest("m", {"maxTokens": 8, "temperature": 0.0})
    row = {"custom_id": "a", "body": {"messages": [{"role": "user", "content": "hi"}]}}
    assert neutral_row(request_line(row, shape), shape) == row
    own_value = {"custom_id": "b", "body": {"messages": [], "max_tokens": 99}}
    assert neutral_row(request_line(own_value, shape), shape) == own_value  # the row's own value


def _batch(batch_id: str, part: int, parts: int, attempt: int, created: int) -> Batch:
    meta = own.metadata(
        "p",
        "j",
        own.Slot("k", part, parts, attempt),
        tokens=1,
        rows=1,
        input_key="in",
        model="m",
        continued_from=None,
        parameters={"maxTokens": 8},
    )
    return Batch(id=batch_id, metadata=meta, created_at=created, model="m")


def test_only_first_attempts_with_every_part_hold_the_whole_input() -> None:
    first = [_batch("a", 0, 2, 0, 1), _batch("b", 1, 2, 0, 2), _batch("c", 1, 2, 1, 3)]
    parts = first_attempt_parts(first, "in")
    assert parts is not None and {p: b.id for p, b in parts.items()} == {0: "a", 1: "b"}
    assert first_attempt_parts(first[:1], "in") is None  # a part missing: not the whole input
    assert first_attempt_parts(first, "other") is None
    assert shape_of(first[0]).params == {"max_tokens": 8}
