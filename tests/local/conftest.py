"""Fixtures for the local backend: a real EmbeddedServer on a loopback socket and a plain httpx
client for one account. Copy ``make_server`` / ``upload_rows`` / ``wait_for_state`` freely."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from batchops.local.server import EmbeddedServer

ACCOUNT = "acme"
DONE = ("JOB_STATE_COMPLETED", "JOB_STATE_FAILED", "JOB_STATE_EXPIRED", "JOB_STATE_CANCELLED")


@pytest.fixture
def server(make_server: Callable[..., EmbeddedServer]) -> EmbeddedServer:
    return make_server()


def api_client(server: EmbeddedServer, *, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(
        base_url=f"{server.base_url}/v1/accounts/{ACCOUNT}", headers=headers, timeout=10
    )


@pytest.fixture
def client(server: EmbeddedServer) -> Iterator[httpx.Client]:
    with api_client(server) as c:
        yield c


def rows(count: int, *, prefix: str = "r", start: int = 0) -> bytes:
    lines = (
        json.dumps(
            {
                "custom_id": f"{prefix}{i}",
                "body": {"messages": [{"role": "user", "content": f"say {i}"}]},
            }
        )
        for i in range(start, start + count)
    )
    return ("\n".join(lines) + "\n").encode()


def upload_rows(
    client: httpx.Client, dataset_id: str, data: bytes, *, name: str = "in.jsonl"
) -> None:
    created = client.post(
        "/datasets",
        json={"datasetId": dataset_id, "dataset": {"userUploaded": {}, "exampleCount": "1"}},
    )
    assert created.status_code == 200, created.text
    uploaded = client.post(f"/datasets/{dataset_id}:upload", files={"file": (name, data)})
    assert uploaded.status_code == 200, uploaded.text


def wait_for_state(
    client: httpx.Client, job_id: str, states: tuple[str, ...] = DONE, *, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"/batchInferenceJobs/{job_id}")
        job: dict[str, Any] = answer.json()
        if answer.status_code == 404 or job.get("state") in states or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


def wait_for_rows(
    client: httpx.Client, job_id: str, count: int, *, timeout: float = 30
) -> dict[str, Any]:
    """Wait until the job has committed at least ``count`` processed rows."""
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/batchInferenceJobs/{job_id}").json()
        done = (job.get("jobProgress") or {}).get("totalProcessedRequests", 0)
        if done >= count or job.get("state") in DONE or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


def download(client: httpx.Client, dataset_id: str, *, lineage: bool = False) -> dict[str, bytes]:
    params = {"downloadLineage": "true"} if lineage else {}
    urls = client.get(f"/datasets/{dataset_id}:getDownloadEndpoint", params=params).json()
    return {key: httpx.get(url).content for key, url in urls["filenameToSignedUrls"].items()}


def jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]
