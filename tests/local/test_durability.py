"""Expiry and continuation, restart mid-job, and two servers sharing one data dir."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from batchops.local.server import EmbeddedServer
from tests.local.conftest import (
    api_client,
    download,
    jsonl,
    rows,
    upload_rows,
    wait_for_rows,
    wait_for_state,
)


def _ids(files: dict[str, bytes], dataset_id: str) -> list[str]:
    return [r["custom_id"] for r in jsonl(files[f"dataset/{dataset_id}/BIJOutputSet.jsonl"])]


def test_expiry_then_continuation_and_lineage(make_server: Callable[..., EmbeddedServer]) -> None:
    slow = make_server(row_delay=0.01, max_job_duration=1.0)
    with api_client(slow) as client:
        upload_rows(client, "in", rows(300))
        client.post(
            "/batchInferenceJobs",
            params={"batchInferenceJobId": "first"},
            json={"model": "m", "inputDatasetId": "in", "outputDatasetId": "out1"},
        )
        expired = wait_for_state(client, "first")
    slow.stop()
    assert expired["state"] == "JOB_STATE_EXPIRED"
    assert 0 < expired["jobProgress"]["outputRows"] < 300
    fast = make_server()
    with api_client(fast) as client:
        first_ids = _ids(download(client, "out1"), "out1")
        assert len(first_ids) == expired["jobProgress"]["outputRows"]
        client.post(
            "/batchInferenceJobs",
            params={"batchInferenceJobId": "second"},
            json={"continuedFromJobName": expired["name"], "outputDatasetId": "out2"},
        )
        second = wait_for_state(client, "second")
        assert second["state"] == "JOB_STATE_COMPLETED" and second["model"] == "m"
        assert second["jobProgress"]["totalInputRequests"] == 300 - len(first_ids)
        assert client.get("/datasets/out2").json()["sourceJobName"] == second["name"]
        files = download(client, "out2", lineage=True)
        assert set(files) == {
            f"dataset/{d}/{f}"
            for d in ("out1", "out2")
            for f in ("BIJOutputSet.jsonl", "error-data")
        }
        together = _ids(files, "out1") + _ids(files, "out2")
        assert sorted(together) == sorted(f"r{i}" for i in range(300))
        assert set(download(client, "out2")) == {
            "dataset/out2/BIJOutputSet.jsonl",
            "dataset/out2/error-data",
        }


def test_continuing_a_running_job_is_refused(make_server: Callable[..., EmbeddedServer]) -> None:
    server = make_server(worker=False)
    with api_client(server) as client:
        upload_rows(client, "in", rows(1))
        job = client.post("/batchInferenceJobs", json={"model": "m", "inputDatasetId": "in"}).json()
        refused = client.post("/batchInferenceJobs", json={"continuedFromJobName": job["name"]})
        assert refused.status_code == 400 and refused.json()["code"] == 9


def test_restart_mid_job_repeats_and_loses_nothing(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    first = make_server(row_delay=0.004)
    with api_client(first) as client:
        upload_rows(client, "in", rows(400))
        client.post(
            "/batchInferenceJobs",
            params={"batchInferenceJobId": "j1"},
            json={"model": "m", "inputDatasetId": "in"},
        )
        partway = wait_for_rows(client, "j1", 60)
    first.stop()
    assert partway["state"] == "JOB_STATE_RUNNING"
    second = make_server()
    with api_client(second) as client:
        job = wait_for_state(client, "j1")
        assert job["state"] == "JOB_STATE_COMPLETED"
        assert job["jobProgress"]["totalProcessedRequests"] == 400
        counts = Counter(_ids(download(client, "j1-output"), "j1-output"))
    assert counts == Counter(f"r{i}" for i in range(400))


def test_two_servers_on_one_data_dir_run_each_job_once(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    one, two = make_server(row_delay=0.0005), make_server(row_delay=0.0005)
    with api_client(one) as client_one, api_client(two) as client_two:
        upload_rows(client_one, "in", rows(500))
        for i in range(4):
            creator = client_one if i % 2 else client_two
            creator.post(
                "/batchInferenceJobs",
                params={"batchInferenceJobId": f"j{i}"},
                json={"model": "m", "inputDatasetId": "in"},
            )
        for i in range(4):
            assert wait_for_state(client_two, f"j{i}")["state"] == "JOB_STATE_COMPLETED"
            counts = Counter(_ids(download(client_one, f"j{i}-output"), f"j{i}-output"))
            assert counts == Counter(f"r{n}" for n in range(500))


def test_stop_is_prompt_mid_job(make_server: Callable[..., EmbeddedServer]) -> None:
    server = make_server(row_delay=0.05)
    with api_client(server) as client:
        upload_rows(client, "in", rows(100))
        client.post(
            "/batchInferenceJobs",
            params={"batchInferenceJobId": "j1"},
            json={"model": "m", "inputDatasetId": "in"},
        )
        wait_for_state(client, "j1", ("JOB_STATE_RUNNING",))
    worker = server.worker
    server.stop()
    assert worker is not None and not worker._thread.is_alive()
