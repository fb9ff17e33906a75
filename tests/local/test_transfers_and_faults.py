"""Signed-URL refusal (tampered, expired) and fault injection rates with a seed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from batchops.local.config import FaultConfig
from batchops.local.server import EmbeddedServer
from batchops.local.signing import sign, transfer_path
from tests.local.conftest import ACCOUNT, api_client, rows, upload_rows


def _download_url(client: httpx.Client) -> str:
    upload_rows(client, "d1", rows(2))
    urls = client.get("/datasets/d1:getDownloadEndpoint").json()["filenameToSignedUrls"]
    return str(urls["dataset/d1/in.jsonl"])


def test_tampered_signed_urls_are_refused(client: httpx.Client) -> None:
    url = _download_url(client)
    assert httpx.get(url).status_code == 200
    other_file = url.replace("/in.jsonl?", "/other.jsonl?")
    bad_sig = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    later = url.replace("expires=", "expires=9")
    for forged in (other_file, bad_sig, later, url.split("?")[0]):
        refused = httpx.get(forged)
        assert refused.status_code == 403 and refused.json()["code"] == 7
    assert httpx.put(url, content=b"x").status_code == 403  # a GET signature is not a PUT one


def test_expired_signed_url_is_refused(server: EmbeddedServer, client: httpx.Client) -> None:
    _download_url(client)
    assert server.backend is not None
    path = transfer_path(ACCOUNT, "d1", "in.jsonl")
    stale = sign(server.backend.key, server.base_url, "GET", path, ttl=-1)
    refused = httpx.get(stale)
    assert refused.status_code == 403 and "expired" in refused.json()["message"]


def _statuses(server: EmbeddedServer, count: int) -> Counter[int]:
    with api_client(server) as client:
        return Counter(client.get("/datasets").status_code for _ in range(count))


@pytest.mark.parametrize(
    ("field", "status"), [("rate_429", 429), ("rate_500", 500), ("rate_503", 503)]
)
def test_fault_rates_are_roughly_honoured(
    make_server: Callable[..., EmbeddedServer], field: str, status: int
) -> None:
    server = make_server(faults=FaultConfig(**{field: 0.3}, seed=7))  # type: ignore[arg-type]
    counts = _statuses(server, 300)
    assert 60 <= counts[status] <= 120 and counts[200] + counts[status] == 300


def test_429_carries_retry_after(make_server: Callable[..., EmbeddedServer]) -> None:
    server = make_server(faults=FaultConfig(rate_429=1.0, retry_after=2.0, seed=1))
    with api_client(server) as client:
        answer = client.get("/batchInferenceJobs")
    assert answer.status_code == 429 and answer.headers["retry-after"] == "2"
    assert answer.json()["code"] == 8


def test_dropped_connections_get_no_response(make_server: Callable[..., EmbeddedServer]) -> None:
    server = make_server(faults=FaultConfig(rate_drop=1.0, seed=1))
    with api_client(server) as client, pytest.raises(httpx.TransportError):
        client.get("/datasets")


def test_same_seed_same_faults(make_server: Callable[..., EmbeddedServer]) -> None:
    def sequence() -> list[int]:
        server = make_server(faults=FaultConfig(rate_500=0.5, seed=3))
        with api_client(server) as client:
            return [client.get("/datasets").status_code for _ in range(30)]

    assert sequence() == sequence()


def test_transfers_exempt_unless_asked(make_server: Callable[..., EmbeddedServer]) -> None:
    clean = make_server()
    with api_client(clean) as client:
        url = _download_url(client)
    faulty = make_server(faults=FaultConfig(rate_503=1.0, seed=1))
    assert httpx.get(url.replace(clean.base_url, faulty.base_url)).status_code == 200
    on_transfers = make_server(faults=FaultConfig(rate_503=1.0, on_transfers=True, seed=1))
    assert httpx.get(url.replace(clean.base_url, on_transfers.base_url)).status_code == 503
