"""OpenAI batches on the engines (the completions endpoint, forwarding by endpoint), two servers on
one data dir, and ``batchops serve`` with the OpenAI routes and the token-quota knob."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from batchops.local.config import BackendConfig
from batchops.local.engines import EchoEngine, OpenAIEngine
from batchops.local.server import EmbeddedServer
from tests.local.openai_util import chat_lines, content, create, openai_client, upload, wait


def _prompt_row(prompt: object, **body: object) -> dict[str, object]:
    return {
        "custom_id": "p",
        "method": "POST",
        "url": "/v1/completions",
        "body": {"model": "m", "prompt": prompt, **body},
    }


def test_echo_answers_completions_with_text_and_counted_usage() -> None:
    [outcome] = EchoEngine().run("m", {}, [_prompt_row(["abcd", "abcdefghijkl"], max_tokens=2)])
    assert outcome.response is not None
    assert outcome.response["object"] == "text_completion"
    assert outcome.response["choices"][0]["text"] == "abcdefgh"
    assert outcome.response["choices"][0]["finish_reason"] == "length"
    # Counted as the planner counts (batchops.tokens; model "m": the estimator): each prompt
    # is its text (1 and 2 tokens) plus a BOS token; "abcdefgh" is one token.
    assert outcome.response["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 1,
        "total_tokens": 6,
    }
    [failed] = EchoEngine().run("m", {}, [_prompt_row("x __fail__")])
    assert failed.response is None and failed.error is not None


def test_openai_engine_forwards_each_row_to_its_endpoint(tmp_path: Path) -> None:
    paths: list[str] = []

    def fake(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json={"object": "x", "usage": {}})

    config = BackendConfig(data_dir=tmp_path, engine="openai", openai_base_url="http://llm.test")
    engine = OpenAIEngine(config, transport=httpx.MockTransport(fake))
    chat = json.loads(chat_lines(1).decode())
    try:
        engine.run("m", {}, [_prompt_row("hi")])
        engine.run("m", {}, [chat])
    finally:
        engine.close()
    assert paths == ["/v1/completions", "/v1/chat/completions"]


def test_two_servers_on_one_data_dir_run_each_batch_once(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    one, two = make_server(row_delay=0.0005), make_server(row_delay=0.0005)
    with openai_client(one) as client_one, openai_client(two) as client_two:
        file_id = upload(client_one, chat_lines(300))
        ids = [create(client_one if i % 2 else client_two, file_id)["id"] for i in range(4)]
        for batch_id in ids:
            done = wait(client_two, batch_id)
            assert done["status"] == "completed"
            lines = content(client_one, done["output_file_id"])
            assert Counter(line["custom_id"] for line in lines) == Counter(
                f"r{i}" for i in range(300)
            )


@pytest.mark.e2e
def test_serve_speaks_openai_and_applies_the_token_limit(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    command = [
        sys.executable,
        "-m",
        "batchops",
        "serve",
        "--port",
        "0",
        "--data-dir",
        data,
        "--openai-enqueued-token-limit",
        "10",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        found = re.search(r"http://\S+", proc.stdout.readline())
        assert found, "serve did not start"
        with httpx.Client(base_url=found.group(0) + "/v1", timeout=10) as client:
            small = wait(client, create(client, upload(client, chat_lines(2)))["id"])
            big = wait(client, create(client, upload(client, chat_lines(20)))["id"])
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert small["status"] == "completed"
    assert big["status"] == "failed"
    assert big["errors"]["data"][0]["code"] == "token_limit_exceeded"


def test_serve_refuses_a_token_limit_that_is_not_positive(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchops", "serve", "--openai-enqueued-token-limit", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "positive integer" in done.stderr
