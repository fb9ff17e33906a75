"""The local backend's OpenAI batch listing stays cheap as batches pile up: one query for a page
and one for the output and error files of all its batches (not one per batch), an index range
scan rather than a sort of every batch, and ended batches' objects built once without ever
showing a file that has since been deleted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from batchops.local import openai_batches
from batchops.local.openai_files import OPENAI_ACCOUNT
from batchops.local.server import EmbeddedServer
from tests.local.openai_util import chat_lines, create, openai_client, upload, wait

BATCHES = 12


def _ended_batches(server: EmbeddedServer, count: int) -> list[dict[str, Any]]:
    with openai_client(server) as client:
        file_id = upload(client, chat_lines(2, fail=(1,)))  # an output and an error file each
        ids = [create(client, file_id)["id"] for _ in range(count)]
        return [wait(client, batch_id) for batch_id in ids]


def test_a_page_of_ended_batches_costs_two_queries(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    server = make_server()
    done = _ended_batches(server, BATCHES)
    assert {b["status"] for b in done} == {"completed"}
    assert backend_of(server).db.one("SELECT 1") is not None  # this thread's connection
    statements: list[str] = []
    connection = backend_of(server).db._connection()
    connection.set_trace_callback(statements.append)
    try:
        rows, more = openai_batches.page(backend_of(server), after=None, limit=100)
        listed = openai_batches.render_page(backend_of(server), rows)
    finally:
        connection.set_trace_callback(None)
    assert not more and len(listed) == BATCHES
    objects = orjson.loads(orjson.dumps(listed))  # ended batches come as their JSON
    assert all(b["output_file_id"] and b["error_file_id"] for b in objects)
    assert len(statements) <= 2, statements


def test_a_page_is_an_index_range_scan(make_server: Callable[..., EmbeddedServer]) -> None:
    server = make_server()
    plan = backend_of(server).db.all(
        f"EXPLAIN QUERY PLAN {openai_batches.PAGE_SQL}", (OPENAI_ACCOUNT, 2**62, 101)
    )
    details = " ".join(row["detail"] for row in plan)
    assert "TEMP B-TREE" not in details, details


def test_a_deleted_output_file_leaves_the_listed_batch(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    server = make_server()
    (batch,) = _ended_batches(server, 1)
    with openai_client(server) as client:
        assert client.get("/batches").json()["data"][0]["output_file_id"] == batch["output_file_id"]
        assert client.delete(f"/files/{batch['output_file_id']}").status_code == 200
        listed = client.get("/batches").json()["data"][0]
        single = client.get(f"/batches/{batch['id']}").json()
    assert listed["output_file_id"] is None and single["output_file_id"] is None
    assert listed["error_file_id"] == batch["error_file_id"]
    assert listed == single


def backend_of(server: EmbeddedServer) -> Any:
    assert server.backend is not None
    return server.backend
