"""The OpenAI Files + Batches API of the local backend over plain HTTP: durability across a
restart, expiry, cancel, faults, the enqueued-token quota, pagination, metadata, input validation
and error shapes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

from batchops.local.config import FaultConfig
from batchops.local.server import EmbeddedServer
from tests.local.conftest import api_client
from tests.local.openai_util import (
    chat_lines,
    content,
    create,
    openai_client,
    upload,
    wait,
    wait_completed,
)

ERROR_KEYS = {"message", "type", "param", "code"}


def test_restart_mid_batch_loses_and_repeats_nothing(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    first = make_server(row_delay=0.004)
    with openai_client(first) as client:
        batch = create(client, upload(client, chat_lines(400, fail=(5, 390))))
        partway = wait_completed(client, batch["id"], 60)
    first.stop()
    assert partway["status"] == "in_progress"
    second = make_server()
    with openai_client(second) as client:
        done = wait(client, batch["id"])
        assert done["status"] == "completed"
        assert done["request_counts"] == {"total": 400, "completed": 398, "failed": 2}
        answered = content(client, done["output_file_id"])
        failed = content(client, done["error_file_id"])
    counts = Counter(line["custom_id"] for line in answered + failed)
    assert counts == Counter(f"r{i}" for i in range(400))
    assert sorted(line["custom_id"] for line in failed) == ["r390", "r5"]


def test_expired_batch_returns_its_finished_rows(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    server = make_server(row_delay=0.01, max_job_duration=1.0)
    with openai_client(server) as client:
        batch = create(client, upload(client, chat_lines(300)))
        done = wait(client, batch["id"])
        answered = content(client, done["output_file_id"])
        unfinished = content(client, done["error_file_id"])
    assert done["status"] == "expired" and done["expired_at"] is not None
    assert 0 < len(answered) < 300
    assert done["request_counts"] == {"total": 300, "completed": len(answered), "failed": 0}
    assert {line["error"]["code"] for line in unfinished} == {"batch_expired"}
    assert all(line["response"] is None for line in unfinished)
    ids = [line["custom_id"] for line in answered + unfinished]
    assert sorted(ids) == sorted(f"r{i}" for i in range(300))


def test_cancel_before_validation_ends_cancelled_without_files(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    idle = make_server(worker=False)
    with openai_client(idle) as client:
        batch = create(client, upload(client, chat_lines(3)))
        cancelling = client.post(
            f"/batches/{batch['id']}/cancel", headers={"Content-Type": "application/json"}
        )
        assert cancelling.json()["status"] == "cancelling"
        again = client.post(f"/batches/{batch['id']}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "cancelling"
    idle.stop()
    with openai_client(make_server()) as client:
        done = wait(client, batch["id"])
    assert done["status"] == "cancelled"
    assert done["output_file_id"] is None and done["error_file_id"] is None


def test_faults_answer_in_openai_error_shape(make_server: Callable[..., EmbeddedServer]) -> None:
    server = make_server(faults=FaultConfig(rate_429=1.0, retry_after=2.0))
    with openai_client(server) as client:
        limited = client.get("/batches")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2" and limited.headers["retry-after-ms"] == "2000"
    assert set(limited.json()["error"]) == ERROR_KEYS
    assert limited.json()["error"]["type"] == "rate_limit_error"
    with api_client(server) as fireworks:
        assert fireworks.get("/datasets").json()["code"] == 8  # Fireworks keeps its own shape


def test_enqueued_token_quota_fails_the_batch_that_would_exceed_it(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    # 100 requests of "say N" are 200 tokens (2 each, counted as echo counts them).
    server = make_server(row_delay=0.01, openai_enqueued_token_limit=300)
    with openai_client(server) as client:
        running = create(client, upload(client, chat_lines(100)))
        assert wait(client, running["id"], ("in_progress",))["status"] == "in_progress"
        refused = wait(client, create(client, upload(client, chat_lines(100)))["id"])
        other_model = create(client, upload(client, chat_lines(10, model="other")))
        assert wait(client, running["id"])["status"] == "completed"
        retried = wait(client, create(client, upload(client, chat_lines(100)))["id"])
        alone_too_big = wait(client, create(client, upload(client, chat_lines(200)))["id"])
        assert wait(client, other_model["id"])["status"] == "completed"
    assert refused["status"] == "failed" and refused["failed_at"] is not None
    assert [e["code"] for e in refused["errors"]["data"]] == ["token_limit_exceeded"]
    assert "Limit: 300 enqueued tokens" in refused["errors"]["data"][0]["message"]
    assert refused["output_file_id"] is None and refused["error_file_id"] is None
    assert retried["status"] == "completed"  # the quota is released when a batch ends
    assert alone_too_big["errors"]["data"][0]["code"] == "token_limit_exceeded"


def test_batch_list_pages_with_after_limit_and_has_more(server: EmbeddedServer) -> None:
    with openai_client(server) as client:
        file_id = upload(client, chat_lines(1))
        ids = [create(client, file_id)["id"] for _ in range(5)][::-1]  # newest first
        first = client.get("/batches", params={"limit": 2}).json()
        second = client.get("/batches", params={"limit": 2, "after": first["last_id"]}).json()
        third = client.get("/batches", params={"limit": 2, "after": second["last_id"]}).json()
        assert client.get("/batches", params={"limit": 0}).status_code == 400
        assert client.get("/batches", params={"limit": 101}).status_code == 400
        unknown = client.get("/batches", params={"after": "batch_nope"})
    assert first["object"] == "list" and first["has_more"] and first["first_id"] == ids[0]
    assert [b["id"] for b in first["data"] + second["data"] + third["data"]] == ids
    assert (second["has_more"], third["has_more"]) == (True, False)
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "after"


def test_file_list_orders_filters_and_pages(server: EmbeddedServer) -> None:
    with openai_client(server) as client:
        ids = [upload(client, chat_lines(1, prefix=f"f{i}-")) for i in range(3)]
        other = client.post(
            "/files", data={"purpose": "user_data"}, files={"file": ("a.txt", b"x")}
        )
        newest = client.get("/files", params={"purpose": "batch"}).json()
        oldest = client.get("/files", params={"order": "asc", "limit": 2}).json()
        rest = client.get(
            "/files", params={"order": "asc", "limit": 2, "after": oldest["last_id"]}
        ).json()
    assert other.status_code == 200
    assert [f["id"] for f in newest["data"]] == ids[::-1] and not newest["has_more"]
    assert [f["id"] for f in oldest["data"] + rest["data"]] == [*ids, other.json()["id"]]
    assert oldest["has_more"] and not rest["has_more"]


def test_metadata_round_trips_verbatim_and_is_bounded(server: EmbeddedServer) -> None:
    metadata = {"batchops/project": "demo", "hash": "ü" * 512, "k" * 64: ""}
    with openai_client(server) as client:
        file_id = upload(client, chat_lines(1))
        created = create(client, file_id, metadata=metadata)
        plain = create(client, file_id, metadata=None)
        got = client.get(f"/batches/{created['id']}").json()
        listed = client.get("/batches").json()["data"]
        refusals = [
            client.post(
                "/batches",
                json={
                    "input_file_id": file_id,
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                    "metadata": bad,
                },
            )
            for bad in (
                {f"k{i}": "v" for i in range(17)},
                {"k" * 65: "v"},
                {"k": "v" * 513},
                {"k": 1},
                ["k"],
            )
        ]
    assert created["metadata"] == got["metadata"] == metadata and plain["metadata"] is None
    assert [b["metadata"] for b in listed] == [None, metadata]
    for refused in refusals:
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "metadata"


def test_error_shapes(make_server: Callable[..., EmbeddedServer]) -> None:
    server = make_server(api_key="secret")
    with openai_client(server, key="secret") as client:
        missing = client.get("/batches/batch_nope")
        gone_file = client.get("/files/file-nope/content")
        garbled = client.post(
            "/batches", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        no_endpoint = client.post(
            "/batches", json={"input_file_id": "f", "completion_window": "24h"}
        )
        bad_window = client.post(
            "/batches",
            json={
                "input_file_id": "f",
                "endpoint": "/v1/chat/completions",
                "completion_window": "48h",
            },
        )
        no_route = client.get("/files/a/b/c")
        wrong_method = client.put("/batches")
    with openai_client(server, key=None) as anonymous:
        denied = anonymous.get("/files")
    for answer, status in (
        (missing, 404),
        (gone_file, 404),
        (garbled, 400),
        (no_endpoint, 400),
        (bad_window, 400),
        (no_route, 404),
        (wrong_method, 405),
        (denied, 401),
    ):
        assert answer.status_code == status, answer.text
        assert set(answer.json()["error"]) == ERROR_KEYS, answer.text
    assert no_endpoint.json()["error"]["param"] == "endpoint"
    assert bad_window.json()["error"]["param"] == "completion_window"
    assert denied.json()["error"]["code"] == "invalid_api_key"
    assert missing.headers["x-should-retry"] == "false"


def _line(custom_id: str, *, url: str = "/v1/chat/completions", model: str = "m") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def test_invalid_input_fails_the_batch_with_every_error(server: EmbeddedServer) -> None:
    lines = [
        _line("a"),
        "{not json",
        _line("b", url="/v1/embeddings"),
        _line("a"),
        _line("c", model="other"),
        json.dumps({"custom_id": "d", "method": "GET", "url": "/v1/chat/completions", "body": {}}),
    ]
    with openai_client(server) as client:
        bad = wait(client, create(client, upload(client, "\n".join(lines).encode()))["id"])
        empty = wait(client, create(client, upload(client, b"\n"))["id"])
    assert bad["status"] == "failed" and bad["request_counts"]["completed"] == 0
    found = [(e["code"], e["line"]) for e in bad["errors"]["data"]]
    assert found == [
        ("invalid_json_line", 2),
        ("url_mismatch", 3),
        ("duplicate_custom_id", 4),
        ("model_mismatch", 5),
        ("invalid_request", 6),
    ]
    assert bad["output_file_id"] is None and bad["error_file_id"] is None
    assert [e["code"] for e in empty["errors"]["data"]] == ["empty_file"]


def test_upload_rules_and_file_deletion(make_server: Callable[..., EmbeddedServer]) -> None:
    server = make_server(row_delay=0.05)
    with openai_client(server) as client:
        no_purpose = client.post("/files", files={"file": ("a.jsonl", b"{}")})
        bad_purpose = client.post(
            "/files", data={"purpose": "nope"}, files={"file": ("a.jsonl", b"{}")}
        )
        file_id = upload(client, chat_lines(100))
        batch = create(client, file_id)
        in_use = client.delete(f"/files/{file_id}")
        # Cancel mid-run (not before validation ends, which leaves no files): the error file
        # then lists the cancelled rows.
        wait_completed(client, batch["id"], 1)
        client.post(f"/batches/{batch['id']}/cancel")
        done = wait(client, batch["id"])
        deleted = client.delete(f"/files/{file_id}")
        output_deleted = client.delete(f"/files/{done['error_file_id']}")
        after = client.get(f"/files/{done['error_file_id']}/content")
    assert no_purpose.json()["error"]["param"] == "purpose"
    assert bad_purpose.json()["error"]["param"] == "purpose"
    assert in_use.status_code == 400 and batch["id"] in in_use.json()["error"]["message"]
    assert deleted.json() == {"id": file_id, "object": "file", "deleted": True}
    assert output_deleted.status_code == 200 and after.status_code == 404
