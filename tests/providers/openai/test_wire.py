"""The OpenAI wire Structs decode pages the way loose servers send them (reference §9)."""

from __future__ import annotations

import json

import pytest

from batchops.providers.openai.wire import Batch, BatchList, decode


def test_a_loose_page_decodes_with_blank_files_as_none_and_metadata_as_text() -> None:
    page = {
        "object": "list",
        "data": [
            {
                "id": "batch_1",
                "object": "batch",
                "status": "completed",
                "created_at": "17",
                "output_file_id": "",
                "error_file_id": None,
                "request_counts": {"total": 2, "completed": 2, "failed": 0},
                "metadata": {"rows": 2, "gone": None, "team": "x"},
                "usage": {"input_tokens": 5, "output_tokens": 7, "extra": 1},
                "a_field_from_the_future": [1, 2],
            }
        ],
        "first_id": "batch_1",
    }
    listed = decode(BatchList, json.dumps(page).encode())
    (batch,) = listed.data
    assert listed.has_more is None
    assert batch.created_at == 17
    assert batch.output_file_id is None and batch.error_file_id is None
    assert batch.metadata == {"rows": "2", "team": "x"}
    assert batch.request_counts is not None and batch.request_counts.completed == 2
    assert batch.usage is not None and batch.usage.output_tokens == 7


@pytest.mark.parametrize("content", [b"{", b'{"status": "completed"}', b"[]"])
def test_what_is_not_a_batch_is_a_value_error(content: bytes) -> None:
    with pytest.raises(ValueError):
        decode(Batch, content)
