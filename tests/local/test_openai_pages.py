"""The OpenAI list routes serve a page again while nothing it shows has changed, and show every
write at once, whoever makes it: a batch created, advanced or cancelled, a file uploaded or
deleted, a row changed by another process sharing the data folder."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from batchops.local.db import Database
from batchops.local.server import EmbeddedServer
from tests.local.openai_util import chat_lines, create, openai_client, upload, wait


def _listed(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def _batches_agree(client: httpx.Client) -> list[dict[str, Any]]:
    """The listing equals each batch's own GET (which no page cache serves). The worker may
    advance a batch between the listing and the GETs (each GET is then newer, rightly), so they
    are asked again, a bounded number of times: a page served stale would never agree once the
    batches stop moving."""
    for _ in range(200):
        listed = _listed(client, "/batches", limit=100)
        own = [client.get(f"/batches/{b['id']}").json() for b in listed]
        if listed == own:
            return listed
        threading.Event().wait(0.02)
    assert listed == own
    return listed


@contextmanager
def _statements(server: EmbeddedServer) -> Iterator[list[str]]:
    """The SQL the server runs meanwhile, on every connection it has opened (it opens one per
    thread: the routes run on its event loop's)."""
    assert server.backend is not None
    connections: list[sqlite3.Connection] = list(server.backend.db._all)
    seen: list[str] = []
    for connection in connections:
        connection.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        for connection in connections:
            connection.set_trace_callback(None)


def test_an_unchanged_listing_is_served_without_reading_the_batches_again(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    server = make_server()
    with openai_client(server) as client:
        file_id = upload(client, chat_lines(2, fail=(1,)))
        for batch_id in [create(client, file_id)["id"] for _ in range(3)]:
            wait(client, batch_id)
        first = client.get("/batches", params={"limit": 2}).content
        files = client.get("/files").content
        with _statements(server) as seen:
            assert client.get("/batches", params={"limit": 2}).content == first
            assert client.get("/files").content == files
    assert not [sql for sql in seen if "FROM jobs" in sql or "FROM openai_files" in sql], seen


def test_every_write_shows_in_the_next_listing(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    server = make_server(row_delay=0.05)
    with openai_client(server) as client:
        file_id = upload(client, chat_lines(2, fail=(1,)))
        done = wait(client, create(client, file_id)["id"])
        _batches_agree(client)
        running = create(client, file_id)  # a new batch, then the worker advances it
        assert [b["id"] for b in _batches_agree(client)] == [running["id"], done["id"]]
        assert client.post(f"/batches/{running['id']}/cancel").status_code == 200
        assert _batches_agree(client)[0]["status"] in ("cancelling", "cancelled")
        wait(client, running["id"])
        assert _batches_agree(client)[0]["status"] == "cancelled"

        assert client.delete(f"/files/{done['output_file_id']}").status_code == 200
        assert _batches_agree(client)[1]["output_file_id"] is None
        names = {f["id"] for f in _listed(client, "/files")}
        assert done["output_file_id"] not in names and done["error_file_id"] in names
        second = upload(client, chat_lines(1))
        assert _listed(client, "/files")[0]["id"] == second


def test_a_write_by_another_process_shows_in_the_next_listing(
    make_server: Callable[..., EmbeddedServer],
) -> None:
    """Another process sharing the data folder (``batchops serve`` beside an embedded backend)
    writes through its own connection: this one's listings must not hide it."""
    server = make_server()
    assert server.backend is not None
    with openai_client(server) as client:
        file_id = upload(client, chat_lines(1))
        batch = wait(client, create(client, file_id)["id"])
        _batches_agree(client)
        files_before = _listed(client, "/files")
        other = Database(server.backend.db.path)
        try:
            other.run(
                "UPDATE jobs SET doc = json_set(doc, '$.openai.metadata', json('{\"k\": \"v\"}')) "
                "WHERE id = ?",
                (batch["id"],),
            )
            assert _batches_agree(client)[0]["metadata"] == {"k": "v"}
            other.run("UPDATE openai_files SET bytes = bytes + 1 WHERE id = ?", (file_id,))
            (changed,) = (f for f in _listed(client, "/files") if f["id"] == file_id)
            before = next(f for f in files_before if f["id"] == file_id)
            assert changed["bytes"] == before["bytes"] + 1
            other.run("DELETE FROM openai_files WHERE id = ?", (batch["output_file_id"],))
            assert _batches_agree(client)[0]["output_file_id"] is None
        finally:
            other.close()
