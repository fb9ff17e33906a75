"""The official fireworks-ai SDK, pointed at the local backend, works unchanged."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import fireworks
import httpx
import pytest
from fireworks import Fireworks

from batchops.local.server import EmbeddedServer
from tests.local.conftest import ACCOUNT, jsonl, rows

DONE = ("JOB_STATE_COMPLETED", "JOB_STATE_FAILED", "JOB_STATE_EXPIRED")


def _sdk(server: EmbeddedServer) -> Fireworks:
    return Fireworks(api_key="sdk-key", account_id=ACCOUNT, base_url=server.base_url, max_retries=0)


def _wait(sdk: Fireworks, job_id: str) -> Any:
    deadline = time.monotonic() + 30
    while (job := sdk.batch_inference_jobs.get(job_id)).state not in DONE:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return job


def _fetch(sdk: Fireworks, dataset_id: str, *, lineage: bool = False) -> dict[str, bytes]:
    urls = sdk.datasets.get_download_endpoint(dataset_id, download_lineage=lineage)
    return {k: httpx.get(u).content for k, u in (urls.filename_to_signed_urls or {}).items()}


def _upload(sdk: Fireworks, dataset_id: str, data: bytes) -> None:
    sdk.datasets.create(dataset_id=dataset_id, dataset={"userUploaded": {}, "exampleCount": "1"})
    sdk.datasets.upload(dataset_id, file=("in.jsonl", data))


def test_sdk_full_flow(make_server: Callable[..., EmbeddedServer]) -> None:
    sdk = _sdk(make_server(api_key="sdk-key"))
    _upload(sdk, "in", rows(50))
    assert sdk.datasets.get("in").state == "READY"
    for i in range(5):
        sdk.batch_inference_jobs.create(
            batch_inference_job_id=f"j{i}", model="m", input_dataset_id="in"
        )
    pages = list(sdk.batch_inference_jobs.list(page_size=2).iter_pages())
    assert len(pages) == 3
    assert [j.name for p in pages for j in p.batch_inference_jobs] == [
        f"accounts/{ACCOUNT}/batchInferenceJobs/j{i}" for i in range(5)
    ]
    job = _wait(sdk, "j0")
    assert job.state == "JOB_STATE_COMPLETED" and job.job_progress is not None
    files = _fetch(sdk, "j0-output")
    assert len(jsonl(files["dataset/j0-output/BIJOutputSet.jsonl"])) == 50


def test_sdk_signed_upload_flow(server: EmbeddedServer) -> None:
    sdk = _sdk(server)
    data = rows(10)
    sdk.datasets.create(dataset_id="big", dataset={"userUploaded": {}, "exampleCount": "10"})
    urls = sdk.datasets.get_upload_endpoint("big", filename_to_size={"a.jsonl": str(len(data))})
    put = httpx.put(
        (urls.filename_to_signed_urls or {})["a.jsonl"],
        content=data,
        headers={
            "Content-Type": "application/octet-stream",
            "X-Goog-Content-Length-Range": f"{len(data)},{len(data)}",
        },
    )
    assert put.status_code == 200
    sdk.datasets.validate_upload("big", body={})
    assert sdk.datasets.get("big").state == "READY"


def test_sdk_continuation_and_lineage(make_server: Callable[..., EmbeddedServer]) -> None:
    slow = make_server(row_delay=0.01, max_job_duration=1.0)
    sdk = _sdk(slow)
    _upload(sdk, "in", rows(200))
    sdk.batch_inference_jobs.create(
        batch_inference_job_id="a", model="m", input_dataset_id="in", output_dataset_id="out-a"
    )
    first = _wait(sdk, "a")
    assert first.state == "JOB_STATE_EXPIRED"
    slow.stop()
    sdk = _sdk(make_server())
    sdk.batch_inference_jobs.create(
        batch_inference_job_id="b", continued_from_job_name=first.name, output_dataset_id="out-b"
    )
    assert _wait(sdk, "b").state == "JOB_STATE_COMPLETED"
    files = _fetch(sdk, "out-b", lineage=True)
    ids = [
        r["custom_id"] for key, data in files.items() if key.endswith(".jsonl") for r in jsonl(data)
    ]
    assert sorted(ids) == sorted(f"r{i}" for i in range(200))


def test_sdk_errors(server: EmbeddedServer) -> None:
    sdk = _sdk(server)
    with pytest.raises(fireworks.NotFoundError):
        sdk.batch_inference_jobs.get("nope")
    sdk.datasets.create(dataset_id="d", dataset={"displayName": "d"})
    with pytest.raises(fireworks.ConflictError) as caught:
        sdk.datasets.create(dataset_id="d", dataset={"displayName": "d"})
    assert caught.value.body["code"] == 6  # type: ignore[index]


def test_sdk_wrong_key_is_permission_denied(make_server: Callable[..., EmbeddedServer]) -> None:
    server = make_server(api_key="right")
    wrong = Fireworks(api_key="wrong", account_id=ACCOUNT, base_url=server.base_url, max_retries=0)
    with pytest.raises(fireworks.PermissionDeniedError) as caught:
        wrong.datasets.list()
    assert "The API key you provided is invalid." in str(caught.value)
