"""The request loop both provider clients share (batchops/providers/request_loop.py): a list
call is followed page by page, at most ``MAX_PAGES`` pages, and a repeated cursor is an error,
on the OpenAI-compatible client as on the Fireworks one."""

from __future__ import annotations

import itertools
import json

import httpx
import pytest

from batchops.errors import ApiError
from batchops.providers.openai import client as openai_client
from batchops.providers.openai.client import OpenAIBatchClient
from batchops.providers.request_loop import pages


def _client(handler: httpx.MockTransport) -> OpenAIBatchClient:
    return OpenAIBatchClient(base_url="http://127.0.0.1:9/v1", api_key=None, transport=handler)


def test_an_endless_batch_list_is_refused_after_max_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_client, "MAX_PAGES", 7)
    ids, asked = itertools.count(), itertools.count()

    def endless(request: httpx.Request) -> httpx.Response:
        next(asked)
        page = {"data": [{"id": f"batch_{next(ids)}"}], "has_more": True}
        return httpx.Response(200, content=json.dumps(page).encode())

    with (
        _client(httpx.MockTransport(endless)) as client,
        pytest.raises(ApiError, match="more than 7"),
    ):
        list(client.iter_batches())
    assert next(asked) == 7  # seven pages asked, not one more


def test_a_repeated_cursor_is_an_error_not_a_loop() -> None:
    def same(request: httpx.Request) -> httpx.Response:
        page = {"data": [{"id": "batch_1"}], "has_more": True}
        return httpx.Response(200, content=json.dumps(page).encode())

    with _client(httpx.MockTransport(same)) as client, pytest.raises(ApiError, match="repeated"):
        list(client.iter_batches())


def test_pages_stop_when_the_cursor_is_empty() -> None:
    book = {None: ("a", "p2"), "p2": ("b", "p3"), "p3": ("c", None)}
    got = list(pages(lambda cursor: book[cursor], lambda page: page[1], path="/x", max_pages=3))
    assert [page[0] for page in got] == ["a", "b", "c"]
