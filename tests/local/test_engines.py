"""Engines: echo semantics, and the openai engine against a fake OpenAI server (an httpx
MockTransport) inside a real job."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from batchops.local.config import BackendConfig
from batchops.local.engines import EchoEngine, OpenAIEngine, job_params
from batchops.local.server import EmbeddedServer
from batchops.local.worker import Worker
from tests.local.conftest import api_client, download, jsonl, rows, upload_rows, wait_for_state


def _row(text: str, **body: object) -> dict[str, object]:
    return {"custom_id": "c", "body": {"messages": [{"role": "user", "content": text}], **body}}


def test_echo_truncates_to_max_tokens_and_honours_n() -> None:
    [outcome] = EchoEngine().run("m", {"max_tokens": 2, "n": 3}, [_row("abcdefghijkl")])
    assert outcome.response is not None
    choices = outcome.response["choices"]
    assert [c["message"]["content"] for c in choices] == ["abcdefgh"] * 3
    assert {c["finish_reason"] for c in choices} == {"length"}
    # Counted as the planner counts (batchops.tokens): model "m" has no tokenizer, so the
    # estimator: 12 letters are 2 tokens, plus the chat template's 4 per message and 3 to reply;
    # "abcdefgh" is one token, three times.
    assert outcome.response["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 3,
        "total_tokens": 12,
    }


def test_job_params_translate_and_row_params_win() -> None:
    params = job_params({"maxTokens": 5, "topP": 0.5, "extraBody": '{"stop": ["x"]}'})
    assert params == {"max_tokens": 5, "top_p": 0.5, "stop": ["x"]}
    [outcome] = EchoEngine().run("m", params, [_row("abcdefghijklmnopqrstuvwxyz", max_tokens=1)])
    assert outcome.response is not None
    assert outcome.response["choices"][0]["message"]["content"] == "abcd"


class FakeOpenAI:
    """An OpenAI-compatible server: answers unless the prompt says 'boom'; records requests."""

    def __init__(self) -> None:
        self.seen: list[dict[str, object]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        with self.lock:
            self.seen.append(body)
        if "boom" in body["messages"][-1]["content"]:
            return httpx.Response(500, json={"error": "boom"})
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
            },
        )


def test_openai_engine_in_a_job(make_server: Callable[..., EmbeddedServer], tmp_path: Path) -> None:
    fake = FakeOpenAI()
    config = BackendConfig(
        data_dir=tmp_path / "data",
        engine="openai",
        openai_base_url="http://llm.test/v1",
        model_map={"fw/m": "served-m"},
    )
    server = make_server(worker=False, engine="openai", openai_base_url="http://llm.test/v1")
    assert server.backend is not None
    worker = Worker(
        server.backend, engine=OpenAIEngine(config, transport=httpx.MockTransport(fake))
    )
    worker.start()
    try:
        with api_client(server) as client:
            upload_rows(
                client,
                "in",
                rows(20) + json.dumps(_row("boom")).replace('"c"', '"boom-row"').encode() + b"\n",
            )
            client.post(
                "/batchInferenceJobs",
                params={"batchInferenceJobId": "j"},
                json={
                    "model": "fw/m",
                    "inputDatasetId": "in",
                    "inferenceParameters": {"temperature": 0.5},
                },
            )
            job = wait_for_state(client, "j")
            files = download(client, "j-output")
    finally:
        worker.stop()
    assert job["state"] == "JOB_STATE_COMPLETED"
    assert job["jobProgress"]["failedRequests"] == 1 and job["jobProgress"]["inputTokens"] == 80
    assert len(jsonl(files["dataset/j-output/BIJOutputSet.jsonl"])) == 20
    [error] = jsonl(files["dataset/j-output/error-data"])
    assert error["custom_id"] == "boom-row" and error["error"]["code"] == "500"
    assert {s["model"] for s in fake.seen} == {"served-m"}
    assert all(s["temperature"] == 0.5 and s["max_tokens"] == 64 for s in fake.seen)


def test_openai_engine_against_a_real_socket(
    make_server: Callable[..., EmbeddedServer], tmp_path: Path
) -> None:
    """Connection refused upstream becomes an error row, not a crash."""
    config = BackendConfig(data_dir=tmp_path, engine="openai", openai_base_url="http://127.0.0.1:9")
    engine = OpenAIEngine(config)
    try:
        [outcome] = engine.run("m", {}, [_row("hello")])
    finally:
        engine.close()
    assert outcome.response is None and outcome.error is not None
    assert outcome.error["code"] == "UNAVAILABLE"
