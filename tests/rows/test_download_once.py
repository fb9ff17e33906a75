"""The first pass after a job finishes downloads its output once (issue 14): the reuse index and
the merge share it, and an input whose bytes are on disk is not downloaded at all. Counted with a
transport that sees every request the client sends to the local backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from batchops.plan import Kind
from batchops.providers.fireworks.client import FireworksClient
from batchops.providers.fireworks.provider import FireworksProvider
from batchops.reconcile import PassOptions, PassResult, run_pass
from tests.rows.test_reuse_e2e import PROJECT, results, write_repo


class Counting(httpx.HTTPTransport):
    """Every request's method and path, and the bytes of every signed download."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []
        self.downloaded = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.requests.append((request.method, request.url.path))
        if request.url.path.startswith("/signed/"):
            self.downloaded += int(response.headers.get("content-length", 0))
        return response

    def reset(self) -> None:
        self.requests.clear()
        self.downloaded = 0


@pytest.fixture
def counted(tmp_path: Path) -> Iterator[tuple[FireworksClient, Counting]]:
    transport = Counting()
    with (
        EmbeddedServer(BackendConfig(data_dir=tmp_path / "backend")) as server,
        FireworksClient(
            base_url=server.base_url, account_id="local", api_key=None, transport=transport
        ) as client,
    ):
        yield client, transport


def one_pass(paths: list[Path], root: Path, client: FireworksClient) -> PassResult:
    return run_pass(
        paths, root=root, provider=FireworksProvider(client), project=PROJECT, options=PassOptions()
    )


def test_the_pass_that_merges_a_finished_job_downloads_its_output_once(
    tmp_path: Path, counted: tuple[FireworksClient, Counting]
) -> None:
    client, transport = counted
    prompts = {f"r{i}": f"question {i}" for i in range(20)}
    paths = write_repo(tmp_path, prompts)
    for _ in range(200):  # until the pass that merges the finished job
        transport.reset()
        result = one_pass(paths, tmp_path, client)
        if any(a.kind is Kind.DOWNLOAD for a in result.plan.actions):
            break
        threading.Event().wait(0.05)
    assert result.converged and len(results(tmp_path)) == 20
    signed = [path for method, path in transport.requests if path.startswith("/signed/")]
    endpoints = [path for _, path in transport.requests if path.endswith(":getDownloadEndpoint")]
    # the job's output (its results and errors files), once; its input is the declared
    # dataset, on disk: never downloaded (before: the input once and the output twice, 10
    # requests in all, 2 x the output's bytes + the input's)
    assert len(endpoints) == 1 and endpoints[0].endswith("-out:getDownloadEndpoint")
    assert len(signed) == len(set(signed)) == 2
    assert len(transport.requests) == 5  # + the two list calls
    output_bytes = (tmp_path / "results" / "j.jsonl").stat().st_size
    assert transport.downloaded <= output_bytes + 1024  # once (the backend's file, ~ ours)
    assert transport.downloaded >= output_bytes // 2


def test_an_input_not_on_disk_is_still_downloaded(
    tmp_path: Path, counted: tuple[FireworksClient, Counting]
) -> None:
    """A fresh checkout after the dataset changed: the earlier job's input is on the provider
    only, and the index is rebuilt from it (answers reused, nothing sent twice)."""
    client, transport = counted
    first = {f"r{i}": f"question {i}" for i in range(6)}
    paths = write_repo(tmp_path, first)
    for _ in range(200):
        if one_pass(paths, tmp_path, client).converged:
            break
        threading.Event().wait(0.05)
    fresh = tmp_path / "fresh"
    paths = write_repo(fresh, {**first, "r6": "question 6"})
    transport.reset()
    plan = one_pass(paths, fresh, client).plan
    inputs = [
        p for _, p in transport.requests if p.endswith(":getDownloadEndpoint") and "-out" not in p
    ]
    assert len(inputs) == 1  # the earlier job's input, from the provider
    (create,) = [a for a in plan.actions if a.kind in (Kind.CREATE_JOB, Kind.REPLACE_JOB)]
    assert create.details["rowsToSend"] == 1 and create.details["rowsReused"] == 6
