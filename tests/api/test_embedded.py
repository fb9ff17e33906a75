"""End to end against the embedded local backend over a real loopback socket.

A recording transport wraps the real ``httpx.HTTPTransport`` (the seam); the backend's own fault
injection supplies 429s, 5xxs and dropped connections.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from batchops.config import Secret
from batchops.errors import AuthError, ConflictError, NotFoundError
from batchops.local.config import FaultConfig
from batchops.local.server import EmbeddedServer
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.wire import TERMINAL_JOB_STATES, BatchInferenceJob, Dataset
from tests.api.conftest import ACCOUNT, KEY

pytestmark = pytest.mark.e2e


@dataclass
class Sent:
    method: str
    path: str
    params: dict[str, str]
    authorization: str | None


class Recording(httpx.BaseTransport):
    """The real transport, remembering what went over the wire."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[Sent] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization")
        self.sent.append(Sent(request.method, request.url.path, dict(request.url.params), auth))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def make_server(
    make_server: Callable[..., EmbeddedServer],
) -> Callable[..., EmbeddedServer]:
    """The shared fixture (tests/conftest.py), with this module's API key by default."""
    return functools.partial(make_server, api_key=KEY)


@pytest.fixture
def connect() -> Iterator[Callable[..., tuple[FireworksClient, Recording]]]:
    made: list[FireworksClient] = []

    def build(server: EmbeddedServer, **options: Any) -> tuple[FireworksClient, Recording]:
        recording = Recording()
        options.setdefault("api_key", Secret(KEY))
        client = FireworksClient(
            base_url=server.base_url,
            account_id=ACCOUNT,
            transport=recording,
            timeout=10,
            **options,
        )
        made.append(client)
        return client, recording

    yield build
    for client in made:
        client.close()


def rows(count: int) -> bytes:
    lines = (
        json.dumps(
            {"custom_id": f"r{i}", "body": {"messages": [{"role": "user", "content": "hi"}]}}
        )
        for i in range(count)
    )
    return ("\n".join(lines) + "\n").encode()


def new_dataset(client: FireworksClient, dataset_id: str) -> None:
    client.create_dataset(dataset_id, Dataset(example_count="1", user_uploaded={}))


def test_upload_download_roundtrip_and_credentials(make_server, connect, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    client, wire = connect(make_server())
    source = tmp_path / "in.jsonl"
    source.write_bytes(rows(50))
    new_dataset(client, "small")
    client.upload_dataset_files("small", [source])
    assert client.get_dataset("small").state == "READY"
    written = client.download_dataset("small", tmp_path / "out")
    assert written == [tmp_path / "out" / "small" / "in.jsonl"]
    assert written[0].read_bytes() == source.read_bytes()
    signed = [s for s in wire.sent if not s.path.startswith("/v1/")]
    assert signed and all(s.authorization is None for s in signed)
    assert all(s.authorization == f"Bearer {KEY}" for s in wire.sent if s.path.startswith("/v1/"))
    assert KEY not in caplog.text


def test_shards_upload_through_signed_urls(make_server, connect, tmp_path):
    client, wire = connect(make_server())
    shards = []
    for n in range(3):
        shards.append(tmp_path / f"part-{n}.jsonl")
        shards[-1].write_bytes(rows(10 + n))
    new_dataset(client, "sharded")
    client.upload_dataset_files("sharded", shards)
    assert client.get_dataset("sharded").state == "READY"
    client.download_dataset("sharded", tmp_path / "out")
    for shard in shards:
        assert (tmp_path / "out" / "sharded" / shard.name).read_bytes() == shard.read_bytes()
    endpoint_calls = [s for s in wire.sent if s.path.endswith(":getUploadEndpoint")]
    assert len(endpoint_calls) == 1


def test_a_job_runs_and_its_results_download(make_server, connect, tmp_path):
    client, _ = connect(make_server())
    source = tmp_path / "in.jsonl"
    source.write_bytes(rows(5))
    new_dataset(client, "input")
    client.upload_dataset_files("input", [source])
    job = BatchInferenceJob(
        model="accounts/fireworks/models/echo", input_dataset_id="accounts/acme/datasets/input"
    )
    client.create_job("job1", job)
    deadline = time.monotonic() + 30
    while (state := client.get_job("job1")) and state.state not in TERMINAL_JOB_STATES:
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert state.state == "JOB_STATE_COMPLETED", state.status
    assert state.output_dataset_id
    written = client.download_dataset(state.output_dataset_id, tmp_path / "out")
    results = [p for p in written if p.name == "BIJOutputSet.jsonl"]
    ids = {json.loads(line)["custom_id"] for line in results[0].read_text().splitlines()}
    assert ids == {f"r{i}" for i in range(5)}
    assert all(p.is_relative_to(tmp_path / "out") for p in written)


def test_list_jobs_pages_through_the_real_server(make_server, connect, tmp_path):
    client, wire = connect(make_server(worker=False))
    source = tmp_path / "in.jsonl"
    source.write_bytes(rows(1))
    new_dataset(client, "input")
    client.upload_dataset_files("input", [source])
    job = BatchInferenceJob(model="m", input_dataset_id="accounts/acme/datasets/input")
    for n in range(205):
        client.create_job(f"j{n:03d}", job)
    names = sorted(j.name or "" for j in client.list_jobs())
    assert names == [f"accounts/acme/batchInferenceJobs/j{n:03d}" for n in range(205)]
    lists = [s for s in wire.sent if s.method == "GET" and s.path.endswith("/batchInferenceJobs")]
    assert len(lists) == 2 and all(s.params["pageSize"] == "200" for s in lists)
    assert "pageToken" in lists[1].params


def test_errors_from_the_real_server(make_server, connect):
    server = make_server()
    client, _ = connect(server)
    with pytest.raises(NotFoundError) as info:
        client.get_job("missing")
    assert info.value.path == "/v1/accounts/acme/batchInferenceJobs/missing"
    wrong, _ = connect(server, api_key=Secret("wrong-key"))
    with pytest.raises(AuthError):
        wrong.list_datasets()


def test_the_whole_flow_survives_injected_faults(make_server, connect, tmp_path):
    faults = FaultConfig(
        rate_429=0.15,
        rate_503=0.15,
        rate_500=0.1,
        rate_drop=0.1,
        retry_after=0.01,
        on_transfers=True,
        seed=11,
    )
    statuses: list[int] = []
    client, _ = connect(
        make_server(faults=faults, worker=False),
        sleep=lambda s: None,
        max_retries=20,
        on_response=lambda method, status: statuses.append(status),
    )
    shards = []
    for n in range(4):
        shards.append(tmp_path / f"s{n}.jsonl")
        shards[-1].write_bytes(rows(20 + n))
    for name in ("a", "b"):
        # A create whose answer was lost comes back as 409 on its retry: that is success here.
        with contextlib.suppress(ConflictError):
            new_dataset(client, name)
    client.upload_dataset_files("a", shards)
    client.upload_dataset_files("b", shards[:1])
    for name, files in (("a", shards), ("b", shards[:1])):
        client.download_dataset(name, tmp_path / "out")
        for shard in files:
            assert (tmp_path / "out" / name / shard.name).read_bytes() == shard.read_bytes()
    assert {429, 0} & set(statuses) and any(s >= 500 for s in statuses)
