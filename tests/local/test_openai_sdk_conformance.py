"""The official ``openai`` SDK, pointed at the local backend with ``base_url``, works unchanged:
with strict response validation, every object it gets passes its own models."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI

from batchops.local.config import FaultConfig
from batchops.local.server import EmbeddedServer
from tests.local.openai_util import ENDED, chat_lines

_CLIENTS: list[OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def _sdk(server: EmbeddedServer, *, key: str = "sdk-key", retries: int = 0) -> OpenAI:
    client = OpenAI(
        api_key=key,
        base_url=f"{server.base_url}/v1",
        max_retries=retries,
        _strict_response_validation=True,
    )
    _CLIENTS.append(client)
    return client


def _wait(sdk: OpenAI, batch_id: str, states: tuple[str, ...] = ENDED) -> Any:
    deadline = time.monotonic() + 30
    while (batch := sdk.batches.retrieve(batch_id)).status not in states:
        assert time.monotonic() < deadline, batch
        time.sleep(0.02)
    return batch


def _lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _upload(sdk: OpenAI, data: bytes) -> Any:
    return sdk.files.create(file=("requests.jsonl", data), purpose="batch")


def test_sdk_full_flow(make_server: Callable[..., EmbeddedServer]) -> None:
    sdk = _sdk(make_server(api_key="sdk-key"))
    uploaded = _upload(sdk, chat_lines(20, fail=(7,)))
    assert uploaded.purpose == "batch" and uploaded.status == "processed"
    assert sdk.files.retrieve(uploaded.id).bytes == uploaded.bytes
    batch = sdk.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"batchops.project": "demo", "batchops.hash": "abc123"},
    )
    assert batch.status == "validating" and batch.request_counts is not None
    done = _wait(sdk, batch.id)
    assert done.status == "completed" and done.model == "gpt-4o-mini"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (20, 19)
    assert done.request_counts.failed == 1
    assert done.metadata == {"batchops.project": "demo", "batchops.hash": "abc123"}
    assert done.usage is not None and done.usage.input_tokens > 0
    assert done.output_file_id and done.error_file_id
    answers = _lines(sdk.files.content(done.output_file_id).content)
    assert sorted(a["custom_id"] for a in answers) == sorted(f"r{i}" for i in range(20) if i != 7)
    first = answers[0]["response"]
    assert first["status_code"] == 200 and first["body"]["object"] == "chat.completion"
    errors = _lines(sdk.files.content(done.error_file_id).content)
    assert [e["custom_id"] for e in errors] == ["r7"]
    assert errors[0]["response"]["status_code"] >= 400 and errors[0]["error"] is None
    assert sdk.files.retrieve(done.output_file_id).purpose == "batch_output"
    assert sdk.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(uploaded.id)


def test_sdk_lists_with_pagination(server: EmbeddedServer) -> None:
    sdk = _sdk(server)
    file_id = _upload(sdk, chat_lines(2)).id
    created = [
        sdk.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(5)
    ]
    first = sdk.batches.list(limit=2)
    assert first.has_more and len(first.data) == 2
    listed = [b.id for b in sdk.batches.list(limit=2)]  # the SDK follows after=<last id>
    assert listed == created[::-1]
    assert [f.id for f in sdk.files.list(purpose="batch", limit=1)] == [file_id]


def test_sdk_cancel_keeps_partial_output(make_server: Callable[..., EmbeddedServer]) -> None:
    sdk = _sdk(make_server(row_delay=0.02))
    file_id = _upload(sdk, chat_lines(300)).id
    batch = sdk.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 30
    while (sdk.batches.retrieve(batch.id).request_counts or batch.request_counts).completed < 10:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancelling = sdk.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    done = _wait(sdk, batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert done.output_file_id and done.error_file_id
    answered = {a["custom_id"] for a in _lines(sdk.files.content(done.output_file_id).content)}
    skipped = _lines(sdk.files.content(done.error_file_id).content)
    assert {s["error"]["code"] for s in skipped} == {"batch_cancelled"}
    assert 10 <= len(answered) < 300
    assert answered | {s["custom_id"] for s in skipped} == {f"r{i}" for i in range(300)}
    with pytest.raises(openai.ConflictError) as refused:
        sdk.batches.cancel(batch.id)
    assert "cancelled" in refused.value.message


def test_sdk_completions_endpoint(server: EmbeddedServer) -> None:
    sdk = _sdk(server)
    lines = [
        {
            "custom_id": f"p{i}",
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": "m", "prompt": f"once upon {i}", "max_tokens": 8},
        }
        for i in range(3)
    ]
    file_id = _upload(sdk, "\n".join(json.dumps(line) for line in lines).encode()).id
    batch = sdk.batches.create(
        input_file_id=file_id, endpoint="/v1/completions", completion_window="24h"
    )
    done = _wait(sdk, batch.id)
    assert done.status == "completed" and done.output_file_id
    bodies = [a["response"]["body"] for a in _lines(sdk.files.content(done.output_file_id).content)]
    assert {b["object"] for b in bodies} == {"text_completion"}
    assert sorted(b["choices"][0]["text"] for b in bodies) == [f"once upon {i}" for i in range(3)]


def test_sdk_errors(make_server: Callable[..., EmbeddedServer]) -> None:
    server = make_server(api_key="right")
    sdk = _sdk(server, key="right")
    with pytest.raises(openai.AuthenticationError) as denied:
        _sdk(server, key="wrong").batches.list()
    assert denied.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError):
        sdk.batches.retrieve("batch_nope")
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.files.create(file=("requests.csv", b"{}"), purpose="batch")
    assert "Must be .jsonl" in bad.value.message
    file_id = _upload(sdk, chat_lines(1)).id
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.batches.create(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={f"k{i}": "v" for i in range(17)},
        )
    assert bad.value.param == "metadata"


def test_sdk_retries_through_injected_faults(make_server: Callable[..., EmbeddedServer]) -> None:
    faults = FaultConfig(rate_429=0.4, retry_after=0.01, seed=7)  # 429s honour retry-after
    server = make_server(faults=faults)
    sdk = _sdk(server, retries=8)
    file_id = _upload(sdk, chat_lines(5)).id
    batch = sdk.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = _wait(sdk, batch.id)
    assert done.status == "completed" and done.output_file_id
    assert len(_lines(sdk.files.content(done.output_file_id).content)) == 5


def test_sdk_reads_failed_and_expired_batches(make_server: Callable[..., EmbeddedServer]) -> None:
    sdk = _sdk(make_server(row_delay=0.01, max_job_duration=1.0))
    bad = _upload(sdk, b'{"custom_id": "a"}\n{oops\n').id
    failed = _wait(
        sdk,
        sdk.batches.create(
            input_file_id=bad, endpoint="/v1/chat/completions", completion_window="24h"
        ).id,
    )
    assert failed.status == "failed" and failed.errors is not None and failed.errors.data
    assert [(e.code, e.line) for e in failed.errors.data] == [
        ("invalid_request", 1),
        ("invalid_json_line", 2),
    ]
    slow = _upload(sdk, chat_lines(300)).id
    expired = _wait(
        sdk,
        sdk.batches.create(
            input_file_id=slow, endpoint="/v1/chat/completions", completion_window="24h"
        ).id,
    )
    assert expired.status == "expired" and expired.output_file_id and expired.error_file_id
    unfinished = _lines(sdk.files.content(expired.error_file_id).content)
    assert {u["error"]["code"] for u in unfinished} == {"batch_expired"}
