"""The OpenAI-compatible provider against the embedded backend's /v1/files + /v1/batches: the
client's calls, a job end to end, parts, quota waves, expiry and resume, concurrent applies,
cancel and delete. Assertions are on what the server holds and what lands on disk."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchops.errors import ApiError, NotFoundError
from batchops.local.server import EmbeddedServer
from batchops.merge import merge_lineage
from batchops.providers.model import DatasetSpec, JobSpec, JobState
from batchops.providers.openai.client import OpenAIBatchClient
from batchops.providers.openai.parts import Limits
from batchops.providers.openai.provider import OpenAIProvider, from_config
from batchops.providers.registry import ProviderConfig, build

pytestmark = pytest.mark.timeout(120)


def _dataset(folder: Path, count: int, *, name: str = "ds", text: str = "say") -> DatasetSpec:
    path = folder / f"{name}.jsonl"
    lines = [
        json.dumps(
            {
                "custom_id": f"r{i:04d}",
                "body": {"messages": [{"role": "user", "content": f"{text} {i}"}]},
            }
        )
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return DatasetSpec(f"{name}-id", name, (path,), count, path.stat().st_size, name, "CHAT")


def _job(key: str = "job-a1", *, continued_from: str | None = None) -> JobSpec:
    return JobSpec(
        key,
        "job-a",
        "gpt-4o-mini",
        "ds-id",
        {"maxTokens": 16},
        None,
        f"{key}-out",
        "job-a",
        continued_from,
    )


@pytest.fixture
def provider_for(tmp_path: Path) -> Iterator[Callable[..., OpenAIProvider]]:
    made: list[OpenAIProvider] = []

    def make(server: EmbeddedServer, **limits: Any) -> OpenAIProvider:
        config = ProviderConfig(
            "openai-local", "openai", base_url=f"{server.base_url}/v1", limits=limits
        )
        provider = build(config, api_key="local-key", poll=0.02, scratch=tmp_path)
        assert isinstance(provider, OpenAIProvider)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


def _wait(provider: OpenAIProvider, key: str, states: set[JobState] | None = None) -> Any:
    wanted = states or {JobState.FINISHED, JobState.FAILED, JobState.EXPIRED, JobState.CANCELLED}
    deadline = time.monotonic() + 60
    while (job := provider.get_job(key)).state not in wanted:
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
    return job


def _merged(provider: OpenAIProvider, keys: list[str], spec: DatasetSpec, root: Path) -> Any:
    folders = provider.download_outputs(keys, root / "dl")
    ids = [json.loads(line)["custom_id"] for line in spec.files[0].read_text().splitlines()]
    return merge_lineage(
        folders,
        job_name="job-a",
        job_ids=keys,
        output=root / "out.jsonl",
        expected_ids=ids,
        root=root,
        partial=True,
    )


def test_client_lists_with_pages_and_counts_requests(
    make_server: Callable[..., EmbeddedServer], tmp_path: Path
) -> None:
    server = make_server(api_key="local-key", worker=False)
    client = OpenAIBatchClient(base_url=f"{server.base_url}/v1", api_key=None)
    with pytest.raises(ApiError) as refused:
        client.list_batches()
    assert refused.value.status == 401
    client.close()
    from batchops.config import Secret

    client = OpenAIBatchClient(base_url=f"{server.base_url}/v1", api_key=Secret("local-key"))
    spec = _dataset(tmp_path, 3)
    upload = client.upload_file(spec.files[0], filename="in.jsonl")
    assert upload.purpose == "batch" and upload.bytes == spec.size
    for i in range(205):
        client.create_batch(
            input_file_id=upload.id, endpoint="/v1/chat/completions", metadata={"n": str(i)}
        )
    before = client.requests_sent.get("GET batches", 0)
    listed = client.list_batches()
    assert len(listed) == 205 and len({b.id for b in listed}) == 205
    assert client.requests_sent["GET batches"] - before == 3  # 100 + 100 + 5
    assert client.cancel_batch(listed[0].id).status in ("cancelling", "cancelled")
    target = client.download_file(upload.id, tmp_path / "back.jsonl")
    assert target.read_bytes() == spec.files[0].read_bytes()
    spare = client.upload_file(spec.files[0])
    assert client.delete_file(spare.id) is True
    with pytest.raises(NotFoundError):
        client.delete_file(spare.id)
    client.close()


def test_a_key_is_never_sent_over_plain_http_to_a_remote_host() -> None:
    from batchops.config import Secret
    from batchops.errors import ConfigError

    with pytest.raises(ConfigError):
        OpenAIBatchClient(base_url="http://api.example.com/v1", api_key=Secret("k"))


def test_create_is_not_retried_once_the_request_may_have_arrived(tmp_path: Path) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.ReadTimeout("no answer", request=request)

    client = OpenAIBatchClient(
        base_url="http://127.0.0.1:9/v1",
        api_key=None,
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
    )
    with pytest.raises(ApiError):
        client.create_batch(input_file_id="f", endpoint="/v1/chat/completions", metadata={})
    assert calls == ["/v1/batches"]  # one try: a retry could create a duplicate
    with pytest.raises(ApiError):
        client.get_batch("b")
    assert len(calls) > 2  # reads are retried


def test_a_job_end_to_end_in_the_neutral_model(
    make_server: Callable[..., EmbeddedServer],
    provider_for: Callable[..., OpenAIProvider],
    tmp_path: Path,
) -> None:
    provider = provider_for(make_server(api_key="local-key"))
    spec = _dataset(tmp_path, 12)
    provider.create_input(spec, project="proj")
    provider.create_job(_job(), project="proj")
    provider.create_job(_job(), project="proj")  # idempotent: nothing new
    job = _wait(provider, "job-a1")
    assert job.state is JobState.FINISHED and job.owner == "proj" and job.input_id == "ds-id"
    assert job.rows.total == 12 and job.rows.succeeded == 12
    assert len(provider.client.list_batches()) == 1
    assert [i.key for i in provider.list_inputs()] == ["ds-id"]
    record = _merged(provider, ["job-a1"], spec, tmp_path)
    assert record.counts.succeeded == 12 and record.counts.missing == 0
    first = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert first["custom_id"] == "r0000" and first["job"] == "job-a1"
    assert first["text"] and first["finish_reason"] and first["usage"]["input_tokens"] > 0


def test_a_dataset_past_the_caps_runs_as_parts_of_one_job(
    make_server: Callable[..., EmbeddedServer],
    provider_for: Callable[..., OpenAIProvider],
    tmp_path: Path,
) -> None:
    provider = provider_for(make_server(api_key="local-key"), maxRequestsPerBatch=4)
    spec = _dataset(tmp_path, 10)
    provider.create_input(spec, project="proj")
    provider.create_job(_job(), project="proj")
    batches = provider.client.list_batches()
    assert (
        sorted(b.request_counts.total for b in batches if b.request_counts)
        in ([2, 4, 4], [0, 0, 0])
        or len(batches) == 3
    )
    job = _wait(provider, "job-a1")
    assert job.state is JobState.FINISHED and job.rows.succeeded == 10
    assert _merged(provider, ["job-a1"], spec, tmp_path).counts.succeeded == 10


def test_waves_stay_under_the_enqueued_token_quota(
    make_server: Callable[..., EmbeddedServer],
    provider_for: Callable[..., OpenAIProvider],
    tmp_path: Path,
) -> None:
    # 12 rows of 2 tokens; the server refuses a batch past 10 enqueued tokens per model.
    server = make_server(api_key="local-key", openai_enqueued_token_limit=10, row_delay=0.01)
    provider = provider_for(server, enqueuedTokens=10, quotaHeadroom=0)
    spec = _dataset(tmp_path, 12)
    provider.create_input(spec, project="proj")
    provider.create_job(_job(), project="proj")  # returns once the last wave is submitted
    job = _wait(provider, "job-a1")
    batches = provider.client.list_batches()
    assert job.state is JobState.FINISHED and job.rows.succeeded == 12
    assert len(batches) >= 3 and all(b.status == "completed" for b in batches)  # 0 refusals


def test_expiry_keeps_finished_rows_and_resume_sends_only_the_rest(
    make_server: Callable[..., EmbeddedServer],
    provider_for: Callable[..., OpenAIProvider],
    tmp_path: Path,
) -> None:
    server = make_server(api_key="local-key", row_delay=0.05, max_job_duration=0.4)
    provider = provider_for(server)
    spec = _dataset(tmp_path, 30)
    provider.create_input(spec, project="proj")
    provider.create_job(_job(), project="proj")
    expired = _wait(provider, "job-a1")
    assert expired.state is JobState.EXPIRED
    finished = expired.rows.succeeded
    assert 0 < finished < 30
    server.stop()
    again = make_server(api_key="local-key", max_job_duration=3600)
    provider = provider_for(again)
    provider.create_input(spec, project="proj")
    provider.create_job(_job("job-a1-r1", continued_from="job-a1"), project="proj")
    resumed = _wait(provider, "job-a1-r1")
    assert resumed.state is JobState.FINISHED and resumed.continued_from == "job-a1"
    assert resumed.rows.total == 30 - finished  # only the rows the expired batch never ran
    record = _merged(provider, ["job-a1", "job-a1-r1"], spec, tmp_path)
    assert (record.counts.succeeded, record.counts.failed, record.counts.missing) == (30, 0, 0)


def test_two_concurrent_applies_converge_on_one_batch_per_slot(
    make_server: Callable[..., EmbeddedServer],
    provider_for: Callable[..., OpenAIProvider],
    tmp_path: Path,
) -> None:
    # 8 rows at 0.15 s: a duplicate is still running when the cancel comes, even under load
    server = make_server(api_key="local-key", stage_delay=0.3, row_delay=0.15)
    spec = _dataset(tmp_path, 8)
    applies = [provider_for(server) for _ in range(2)]
    gate = threading.Barrier(2)

    def apply(provider: OpenAIProvider) -> None:
        provider.create_input(spec, project="proj")
        gate.wait()
        provider.create_job(_job(), project="proj")

    threads = [threading.Thread(target=apply, args=(p,)) for p in applies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    created = applies[0].client.list_batches()
    assert 1 <= len(created) <= 2  # at most one duplicate per concurrent apply
    oldest = min(created, key=lambda b: (b.created_at, b.id))
    found = applies[1].get_job("job-a1").duplicates
    assert sorted(found) == sorted(b.id for b in created if b.id != oldest.id)
    applies[1].cancel_duplicates("job-a1")
    assert applies[0].duplicates("proj") == []  # the next pass finds nothing left to cancel
    assert applies[0].get_job("job-a1").duplicates == ()
    assert _wait(applies[0], "job-a1").state is JobState.FINISHED
    states = {b.id: b.status for b in applies[0].client.list_batches()}
    assert states[oldest.id] == "completed"
    assert all(s == "cancelled" for bid, s in states.items() if bid != oldest.id)


def test_cancel_and_delete_stay_within_the_job(
    make_server: Callable[..., EmbeddedServer],
    provider_for: Callable[..., OpenAIProvider],
    tmp_path: Path,
) -> None:
    provider = provider_for(make_server(api_key="local-key", row_delay=0.2))
    spec = _dataset(tmp_path, 20)
    provider.create_input(spec, project="proj")
    provider.create_job(_job(), project="proj")
    provider.create_job(_job("job-b1"), project="proj")
    provider.cancel_job("job-a1")
    assert _wait(provider, "job-a1").state is JobState.CANCELLED
    assert provider.get_job("job-b1").state in (JobState.WAITING, JobState.RUNNING)
    provider.delete_job("job-a1")
    assert provider.client.list_batches()  # the records stay: the API has no batch delete
    assert provider.get_job("job-a1").state is JobState.DELETING  # prune skips it from now on
    with pytest.raises(NotFoundError):
        provider.delete_job("job-a1")  # its files are gone already
    with pytest.raises(NotFoundError):
        provider.cancel_job("no-such-job")
    provider.cancel_job("job-b1")


def test_from_config_reads_declared_limits() -> None:
    config = ProviderConfig(
        "together",
        "openai",
        base_url="https://api.together.xyz/v1",
        limits={"maxRequestsPerBatch": 1000, "enqueuedTokens": 5000},
    )
    provider = from_config(config, api_key="k")
    assert provider.limits == Limits(1000, Limits().max_bytes, 5000, Limits().headroom)
    assert provider.name == "together" and provider.kind == "openai"
    provider.close()
