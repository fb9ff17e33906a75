"""The local backend honours the list ``filter`` batchops sends (a subset of AIP-160)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from batchops.local.server import EmbeddedServer

DS = "/v1/accounts/local/datasets"


def create(http: httpx.Client, ds_id: str, display: str) -> None:
    body = {"datasetId": ds_id, "dataset": {"displayName": display, "exampleCount": "1"}}
    http.post(DS, json=body).raise_for_status()


def names(http: httpx.Client, **params: Any) -> tuple[list[str], int]:
    response = http.get(DS, params=params)
    response.raise_for_status()
    body = response.json()
    ids = [d["name"].rsplit("/", 1)[-1] for d in body["datasets"]]
    while body.get("nextPageToken"):
        body = http.get(DS, params={**params, "pageToken": body["nextPageToken"]}).json()
        ids += [d["name"].rsplit("/", 1)[-1] for d in body["datasets"]]
    return ids, response.json()["totalSize"]


@pytest.fixture
def http(make_server: Callable[..., EmbeddedServer]) -> Iterator[httpx.Client]:
    server = make_server(worker=False)
    with httpx.Client(base_url=server.base_url) as client:
        create(client, "a1", "a [batchops:proj]")
        create(client, "a2", "b [batchops:proj]")
        create(client, "b1", "c [batchops:proj-2]")
        for i in range(7):
            create(client, f"f{i}", f"someone else's {i}")
        yield client


def test_contains_and_equal_and_and(http: httpx.Client) -> None:
    assert names(http, filter='display_name:"[batchops:proj]"') == (["a1", "a2"], 2)
    assert names(http, filter='displayName="c [batchops:proj-2]"') == (["b1"], 1)
    both = 'display_name:"[batchops:proj]" AND display_name:"b "'
    assert names(http, filter=both) == (["a2"], 1)
    assert names(http) == (["a1", "a2", "b1", *(f"f{i}" for i in range(7))], 10)


def test_a_filtered_list_pages_through_the_matches_only(http: httpx.Client) -> None:
    assert names(http, filter='display_name:"someone"', pageSize="2")[0] == [
        f"f{i}" for i in range(7)
    ]


@pytest.mark.parametrize(
    "bad", ['owner:"x"', "display_name:x", 'display_name:"x" OR state="y"', 'name="x" AND']
)
def test_an_unsupported_filter_is_a_400_that_says_what_is(http: httpx.Client, bad: str) -> None:
    response = http.get(DS, params={"filter": bad})
    assert response.status_code == 400
    assert "unsupported filter" in response.text
