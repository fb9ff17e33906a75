"""COMPLETION rows (``body.prompt``) run on the local backend with both engines: echo, and openai
against a fake OpenAI-compatible server on a loopback socket that serves only /v1/completions for
prompts (a prompt sent to /v1/chat/completions is a 400 there, as on vLLM)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from batchops.local.server import EmbeddedServer
from tests.local.conftest import api_client, download, jsonl, upload_rows, wait_for_state


def prompt_rows(count: int) -> bytes:
    lines = [
        json.dumps({"custom_id": f"p{i}", "body": {"prompt": f"Once upon a time {i}"}})
        for i in range(count)
    ]
    return ("\n".join(lines) + "\n").encode()


class _Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, Any]]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, body))
        if self.path == "/v1/completions" and "prompt" in body:
            self._answer(
                200,
                {
                    "id": "cmpl-1",
                    "object": "text_completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "text": " there was", "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
                },
            )
        else:
            self._answer(400, {"error": {"message": f"{self.path} does not take this body"}})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_openai() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def run_job(server: EmbeddedServer) -> tuple[dict[str, Any], dict[str, bytes]]:
    with api_client(server) as client:
        upload_rows(client, "in", prompt_rows(3))
        created = client.post(
            "/batchInferenceJobs",
            params={"batchInferenceJobId": "j"},
            json={"model": "m", "inputDatasetId": "in", "inferenceParameters": {"maxTokens": 8}},
        )
        assert created.status_code == 200, created.text
        job = wait_for_state(client, "j")
        return job, download(client, "j-output") if job["state"] == "JOB_STATE_COMPLETED" else {}


def test_prompt_rows_complete_with_the_echo_engine(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    job, files = run_job(make_server())
    assert job["state"] == "JOB_STATE_COMPLETED", job.get("status")
    out = jsonl(files["dataset/j-output/BIJOutputSet.jsonl"])
    assert sorted(line["custom_id"] for line in out) == ["p0", "p1", "p2"]
    answer = next(line["response"] for line in out if line["custom_id"] == "p1")
    assert answer["object"] == "text_completion"
    assert answer["choices"][0]["text"] == "Once upon a time 1"
    assert job["jobProgress"]["failedRequests"] == 0 and job["jobProgress"]["inputTokens"] > 0


def test_prompt_rows_go_to_v1_completions_with_the_openai_engine(
    make_server: Callable[..., EmbeddedServer],
    fake_openai: tuple[str, list[tuple[str, dict[str, Any]]]],
) -> None:
    url, seen = fake_openai
    job, files = run_job(make_server(engine="openai", openai_base_url=url))
    assert job["state"] == "JOB_STATE_COMPLETED", job.get("status")
    assert job["jobProgress"]["failedRequests"] == 0
    out = jsonl(files["dataset/j-output/BIJOutputSet.jsonl"])
    assert {line["response"]["choices"][0]["text"] for line in out} == {" there was"}
    assert {path for path, _ in seen} == {"/v1/completions"}
    assert all(body["max_tokens"] == 8 and body["model"] == "m" for _, body in seen)


def test_a_row_with_both_prompt_and_messages_fails_validation(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    server = make_server()
    with api_client(server) as client:
        row = {"custom_id": "x", "body": {"prompt": "a", "messages": [{"role": "user"}]}}
        upload_rows(client, "in", (json.dumps(row) + "\n").encode())
        client.post(
            "/batchInferenceJobs",
            params={"batchInferenceJobId": "j"},
            json={"model": "m", "inputDatasetId": "in"},
        )
        job = wait_for_state(client, "j")
    assert job["state"] == "JOB_STATE_FAILED"
    assert "both messages and prompt" in job["status"]["message"]
