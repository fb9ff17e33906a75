"""One bad request cannot break a shared local backend (issue 11, section 2): a job it cannot run
is refused with a 400 in the API's error shape; a job that fails while being processed fails
alone, with a message, and the worker goes on with every other job, across restarts; a row the
engine cannot process fails that row only."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from batchops.local.engines import EchoEngine, Outcome
from batchops.local.httputil import MAX_JSON_BODY
from batchops.local.server import EmbeddedServer
from batchops.local.worker import Worker
from tests.local.conftest import api_client, download, rows, upload_rows, wait_for_state

pytestmark = pytest.mark.timeout(60)


def create_job(client: httpx.Client, job_id: str, **parameters: Any) -> httpx.Response:
    body = {
        "model": "accounts/fireworks/models/m",
        "inputDatasetId": "in",
        "inferenceParameters": parameters,
    }
    return client.post("/batchInferenceJobs", params={"batchInferenceJobId": job_id}, json=body)


@pytest.mark.parametrize(
    ("parameters", "words"),
    [
        ({"extraBody": '{"x": NaN}'}, "not valid JSON"),
        ({"extraBody": '{"x": 1e999}'}, "not valid JSON"),
        ({"extraBody": "[1]"}, "must be a JSON object"),
        ({"extraBody": '{"max_tokens": 1e23}'}, "max_tokens must be an integer"),
        ({"maxTokens": 2**40}, "max_tokens 1099511627776 is out of range"),
    ],
)
def test_a_job_the_worker_could_not_run_is_refused_with_a_400(
    make_server: Callable[..., EmbeddedServer], parameters: dict[str, Any], words: str
) -> None:
    with api_client(make_server(worker=False)) as client:
        upload_rows(client, "in", rows(1))
        answer = create_job(client, "bad", **parameters)
        assert answer.status_code == 400
        body = answer.json()
        assert body["code"] == 3 and body["details"] == [] and words in body["message"]
        assert client.get("/batchInferenceJobs/bad").status_code == 404


def test_a_stored_job_that_cannot_be_processed_fails_alone_across_restarts(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    """A job stored before the 400 existed (or corrupted since) fails with a message; the job
    after it, of another account too, still completes."""
    server = make_server(worker=False)
    with api_client(server) as client:
        upload_rows(client, "in", rows(3))
        assert create_job(client, "poisoned").status_code == 200
        assert create_job(client, "fine").status_code == 200
        assert server.backend is not None
        doc = orjson.loads(server.backend.db.one("SELECT doc FROM jobs WHERE id = 'poisoned'")[0])
        doc["inferenceParameters"]["extraBody"] = '{"x": NaN}'
        with server.backend.db.transaction() as conn:
            conn.execute("UPDATE jobs SET doc = ? WHERE id = 'poisoned'", (orjson.dumps(doc),))
        worker = Worker(server.backend)
        worker.start()
        try:
            poisoned = wait_for_state(client, "poisoned")
            fine = wait_for_state(client, "fine")
        finally:
            worker.stop()
    assert poisoned["state"] == "JOB_STATE_FAILED"
    assert "could not be processed" in poisoned["status"]["message"]
    assert fine["state"] == "JOB_STATE_COMPLETED"


class Fragile(EchoEngine):
    """Echo, except that a batch holding a 'boom' row raises (a bug, a broken engine)."""

    def run(self, model: str, params: dict[str, Any], rows: list[dict[str, Any]]) -> list[Outcome]:
        if any("boom" in json.dumps(row["body"]) for row in rows):
            raise RuntimeError("engine exploded")
        return super().run(model, params, rows)


def test_a_row_the_engine_cannot_process_fails_that_row_only(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    server = make_server(worker=False)
    assert server.backend is not None
    worker = Worker(server.backend, engine=Fragile())
    worker.start()
    try:
        with api_client(server) as client:
            data = (
                rows(3)
                + json.dumps(
                    {"custom_id": "x", "body": {"messages": [{"role": "user", "content": "boom"}]}}
                ).encode()
                + b"\n"
            )
            upload_rows(client, "in", data)
            assert create_job(client, "j").status_code == 200
            job = wait_for_state(client, "j")
            assert job["state"] == "JOB_STATE_COMPLETED"
            files = download(client, job["outputDatasetId"].rsplit("/", 1)[1])
    finally:
        worker.stop()
    results = [json.loads(line) for name, body in files.items() for line in body.splitlines()]
    errors = {r["custom_id"]: r["error"]["message"] for r in results if "error" in r}
    assert errors == {"x": "the row could not be processed: engine exploded"}
    assert sorted(r["custom_id"] for r in results if "response" in r) == ["r0", "r1", "r2"]


def test_a_request_body_too_big_is_refused_as_it_arrives(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    with api_client(make_server(worker=False)) as client:
        body = b'{"displayName": "' + b"x" * (MAX_JSON_BODY + 1) + b'"}'
        answer = client.post("/datasets", content=body)
        streamed = client.post("/datasets", content=iter([body[:100], body[100:]]))
    for each in (answer, streamed):
        assert each.status_code == 400 and "larger than" in each.json()["message"]
