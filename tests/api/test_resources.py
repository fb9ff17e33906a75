"""Jobs and datasets against the in-memory fake: paths, bodies, pagination, tolerance."""

from __future__ import annotations

import httpx
import pytest

from batchops.errors import ApiError, NotFoundError
from batchops.providers.fireworks.wire import BatchInferenceJob, Dataset, InferenceParameters


def test_job_lifecycle_by_bare_id_and_resource_name(make_client, fake):
    client = make_client(fake.handler)
    job = BatchInferenceJob(
        model="accounts/fireworks/models/m",
        input_dataset_id="accounts/acme/datasets/in",
        inference_parameters=InferenceParameters(max_tokens=64),
    )
    created = client.create_job("accounts/acme/batchInferenceJobs/j1", job)
    assert created.name == "accounts/acme/batchInferenceJobs/j1"
    assert fake.jobs["j1"]["inferenceParameters"] == {"maxTokens": 64}
    assert "name" not in fake.seen[-1].params and fake.seen[-1].params == {
        "batchInferenceJobId": "j1"
    }
    assert client.get_job("j1").state == "JOB_STATE_VALIDATING"
    client.delete_job("accounts/acme/batchInferenceJobs/j1")
    assert fake.jobs == {}
    with pytest.raises(NotFoundError):
        client.get_job("j1")


def test_dataset_lifecycle(make_client, fake):
    client = make_client(fake.handler)
    created = client.create_dataset("d1", Dataset(example_count="3", user_uploaded={}))
    assert created.state == "UPLOADING"
    assert fake.datasets["d1"]["exampleCount"] == "3"
    assert client.get_dataset("accounts/acme/datasets/d1").name == "accounts/acme/datasets/d1"
    assert [d.name for d in client.list_datasets()] == ["accounts/acme/datasets/d1"]
    client.delete_dataset("d1")
    assert fake.datasets == {}


def test_list_jobs_follows_every_page_at_200(make_client, fake):
    for n in range(450):
        fake.jobs[f"j{n}"] = {"name": f"accounts/acme/batchInferenceJobs/j{n}"}
    jobs = make_client(fake.handler).list_jobs()
    assert [j.name for j in jobs] == [f"accounts/acme/batchInferenceJobs/j{n}" for n in range(450)]
    lists = [s.params for s in fake.seen]
    assert lists == [
        {"pageSize": "200"},
        {"pageSize": "200", "pageToken": "200"},
        {"pageSize": "200", "pageToken": "400"},
    ]


def test_list_stops_on_a_missing_token_and_on_an_empty_account(make_client, scripted):
    page = httpx.Response(200, json={"batchInferenceJobs": [{"name": "x"}]})
    empty = httpx.Response(200, json={})
    script = scripted([page, empty])
    client = make_client(script.handler)
    assert [j.name for j in client.list_jobs()] == ["x"]
    assert client.list_jobs() == []
    assert len(script.seen) == 2


def test_a_repeated_page_token_is_an_error_not_a_loop(make_client, scripted):
    looping = {"datasets": [], "nextPageToken": "same"}
    script = scripted([httpx.Response(200, json=looping) for _ in range(3)])
    with pytest.raises(ApiError, match="repeated a page token"):
        make_client(script.handler).list_datasets()


def test_unknown_fields_and_states_are_kept(make_client, scripted):
    body = {
        "name": "j",
        "state": "JOB_STATE_SOMETHING_NEW",
        "placement": {"region": "X"},
        "jobProgress": {"percent": 50, "newCounter": 3},
    }
    job = make_client(scripted([httpx.Response(200, json=body)]).handler).get_job("j")
    assert job.state == "JOB_STATE_SOMETHING_NEW"
    assert job.model_extra == {"placement": {"region": "X"}}
    assert job.job_progress is not None and job.job_progress.percent == 50


def test_ids_cannot_escape_their_path(make_client, fake):
    client = make_client(fake.handler)
    with pytest.raises(NotFoundError):
        client.get_dataset("a?b#c")
    assert fake.seen[-1].path == "/v1/accounts/acme/datasets/a?b#c"  # one path segment
    assert fake.seen[-1].params == {}


def test_a_list_filter_is_sent_and_a_server_refusing_it_is_asked_again_without(
    make_client, scripted
):
    mine = httpx.Response(200, json={"batchInferenceJobs": [{"name": "mine"}]})
    refused = httpx.Response(400, json={"error": {"code": 400, "message": "bad filter"}})
    every = httpx.Response(200, json={"batchInferenceJobs": [{"name": "a"}, {"name": "b"}]})
    script = scripted([mine, refused, every])
    client = make_client(script.handler)
    assert [j.name for j in client.list_jobs(filter='display_name:"[batchops:p]"')] == ["mine"]
    assert [j.name for j in client.list_jobs(filter='display_name:"[batchops:p]"')] == ["a", "b"]
    filters = [r.url.params.get("filter") for r in script.seen]
    assert filters == ['display_name:"[batchops:p]"', 'display_name:"[batchops:p]"', None]
