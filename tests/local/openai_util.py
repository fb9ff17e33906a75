"""Helpers for the OpenAI Files + Batches tests of the local backend: an httpx client on /v1, batch
input lines, upload, and waiting for a batch to end."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from batchops.local.server import EmbeddedServer

ENDED = ("completed", "failed", "expired", "cancelled")


def openai_client(server: EmbeddedServer, *, key: str | None = "any-key") -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=f"{server.base_url}/v1", headers=headers, timeout=10)


def chat_lines(
    count: int, *, model: str = "gpt-4o-mini", prefix: str = "r", fail: tuple[int, ...] = ()
) -> bytes:
    lines = []
    for i in range(count):
        text = f"say {i}" + (" __fail__" if i in fail else "")
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        request = {
            "custom_id": f"{prefix}{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": body,
        }
        lines.append(json.dumps(request))
    return ("\n".join(lines) + "\n").encode()


def upload(client: httpx.Client, data: bytes, *, name: str = "in.jsonl") -> str:
    answer = client.post("/files", data={"purpose": "batch"}, files={"file": (name, data)})
    assert answer.status_code == 200, answer.text
    file_id: str = answer.json()["id"]
    return file_id


def create(client: httpx.Client, file_id: str, **extra: Any) -> dict[str, Any]:
    body = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        **extra,
    }
    answer = client.post("/batches", json=body)
    assert answer.status_code == 200, answer.text
    batch: dict[str, Any] = answer.json()
    return batch


def wait(
    client: httpx.Client, batch_id: str, states: tuple[str, ...] = ENDED, *, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch: dict[str, Any] = client.get(f"/batches/{batch_id}").json()
        if batch.get("status") in states or time.monotonic() > deadline:
            return batch
        time.sleep(0.02)


def wait_completed(client: httpx.Client, batch_id: str, count: int) -> dict[str, Any]:
    """Wait until at least ``count`` requests of the batch are committed (or it ended)."""
    deadline = time.monotonic() + 30
    while True:
        batch: dict[str, Any] = client.get(f"/batches/{batch_id}").json()
        done = batch["request_counts"]["completed"] + batch["request_counts"]["failed"]
        if done >= count or batch["status"] in ENDED or time.monotonic() > deadline:
            return batch
        time.sleep(0.02)


def content(client: httpx.Client, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    answer = client.get(f"/files/{file_id}/content")
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.content.splitlines() if line.strip()]
