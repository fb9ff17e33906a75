"""List pages decoded with msgspec (``batchops.providers.fireworks.pages``) agree with the wire
models: whenever ``decode_*`` answers, the pydantic model accepts the same bytes and holds the
same values (inference parameters' ``to_wire`` included); when it cannot be sure it declines, and
the client's answer, or its error message, is the model's, as before."""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from batchops.errors import ApiError
from batchops.providers.fireworks import pages
from batchops.providers.fireworks.pages import decode_datasets, decode_jobs
from batchops.providers.fireworks.provider import input_from_wire, job_from_wire
from batchops.providers.fireworks.wire import (
    BatchInferenceJob,
    Dataset,
    InferenceParameters,
    JobProgress,
    ListDatasetsResponse,
    ListJobsResponse,
    Status,
)

MODELS = [ListJobsResponse, ListDatasetsResponse, BatchInferenceJob, Dataset, JobProgress, Status]
MODELS.append(InferenceParameters)
STRUCTS = [pages.JobsPage, pages.DatasetsPage, pages.ListedJob, pages.ListedDataset]
STRUCTS += [pages.ListedProgress, pages.ListedStatus, pages.ListedParams]

# Values of every JSON type, and the edges of the models' coercions: numbers as strings, floats
# with no fraction, booleans, big integers, nulls.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "5", "1.5", "OK", "JOB_STATE_COMPLETED", "READY", "a/b/c", "true"]),
    st.text(max_size=5),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)


def keys_of(model: type[BaseModel]) -> list[str]:
    names = [f.alias or name for name, f in model.model_fields.items()] + list(model.model_fields)
    return [*sorted(set(names)), "lifecycle", "unknownField"]


def typed(model: type[BaseModel], key: str) -> st.SearchStrategy[Any]:
    """Mostly a value of the type the model declares for ``key`` (so that the fast path is taken
    often), else any value."""
    field = next(
        (f for name, f in model.model_fields.items() if key in (name, f.alias)),
        None,
    )
    kinds = {"str": st.text(max_size=4), "int": st.integers(-(2**63), 2**63 - 1)}
    kinds["float"] = st.floats(allow_nan=False, allow_infinity=False) | kinds["int"]
    kinds["dict"] = st.dictionaries(st.text(max_size=3), VALUES, max_size=2)
    text = str(field.annotation) if field is not None else ""
    right = [strategy for name, strategy in kinds.items() if name in text]
    return st.one_of(st.none(), *right) if right else VALUES


def objects(model: type[BaseModel], nested: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of the model's keys (camelCase, snake_case, unknown), each holding a
    value of its type or of any type, or (for a nested model's key) an object of that model."""
    keys = keys_of(model)

    def value(key: str) -> st.SearchStrategy[Any]:
        own = nested[key] if key in nested else typed(model, key)
        return st.one_of(own, own, own, VALUES)

    camel = [k for k in keys if "_" not in k]
    chosen = st.lists(st.sampled_from(camel), unique=True, max_size=8) | st.lists(
        st.sampled_from(keys), unique=True, max_size=8
    )
    return chosen.flatmap(lambda ks: st.fixed_dictionaries({k: value(k) for k in ks}))


STATUS = objects(Status, {})
PARAMS = objects(InferenceParameters, {})
PROGRESS = objects(JobProgress, {})
JOB = objects(
    BatchInferenceJob,
    {"status": STATUS, "inferenceParameters": PARAMS, "jobProgress": PROGRESS},
)
DATASET = objects(Dataset, {"status": STATUS})


def page(items_key: str, item: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    listing = st.lists(st.one_of(item, VALUES), max_size=3) | VALUES
    extra = st.dictionaries(
        st.sampled_from(["nextPageToken", "totalSize", "next_page_token"]), VALUES
    )
    return st.builds(lambda items, more: {items_key: items, **more}, listing, extra)


def same(fast: Any, slow: Any) -> None:
    """Field by field: a Struct holds what the model holds."""
    if isinstance(slow, BaseModel):
        assert fast is not None
        for name in type(slow).model_fields:
            same(getattr(fast, name), getattr(slow, name))
        if isinstance(slow, InferenceParameters):
            assert fast.to_wire() == slow.to_wire()
            assert list(fast.to_wire()) == list(slow.to_wire())  # the same order
    elif isinstance(slow, list):
        assert isinstance(fast, list) and len(fast) == len(slow)
        for a, b in zip(fast, slow, strict=True):
            same(a, b)
    else:
        assert type(fast) is type(slow) and fast == slow


def check(body: bytes, decode: Any, model: type[BaseModel]) -> bool:
    fast = decode(body)
    if fast is None:
        return False
    same(fast, model.model_validate_json(body))  # the model accepts it, with the same values
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page("batchInferenceJobs", JOB))
def test_a_jobs_page_decodes_as_the_wire_model_does(body: dict[str, Any]) -> None:
    check(json.dumps(body).encode(), decode_jobs, ListJobsResponse)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PARAMS, PROGRESS)
def test_inference_parameters_and_progress_decode_as_the_wire_model_does(
    params: dict[str, Any], progress: dict[str, Any]
) -> None:
    job = {"inferenceParameters": params, "jobProgress": progress}
    check(json.dumps({"batchInferenceJobs": [job]}).encode(), decode_jobs, ListJobsResponse)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page("datasets", DATASET))
def test_a_datasets_page_decodes_as_the_wire_model_does(body: dict[str, Any]) -> None:
    check(json.dumps(body).encode(), decode_datasets, ListDatasetsResponse)


REAL_JOB = {
    "name": "accounts/a/batchInferenceJobs/j-1",
    "displayName": "j [batchops:p]",
    "createTime": "2026-08-30T03:48:56.029803417Z",
    "state": "JOB_STATE_COMPLETED",
    "status": {"code": "OK", "message": ""},
    "model": "accounts/fireworks/models/m",
    "inputDatasetId": "accounts/a/datasets/in",
    "outputDatasetId": "accounts/a/datasets/out",
    "inferenceParameters": {"extraBody": "{}", "maxTokens": 64, "temperature": 1, "seed": 7},
    "precision": "BF16",
    "jobProgress": None,
    "lifecycle": None,  # newer fields the models do not declare
    "continuedFromJobName": "",
}


def test_what_the_service_sends_takes_the_fast_path_with_the_same_values() -> None:
    body = json.dumps({"batchInferenceJobs": [REAL_JOB], "nextPageToken": ""}).encode()
    assert check(body, decode_jobs, ListJobsResponse)
    listed = decode_jobs(body)
    assert listed is not None
    params = listed.batch_inference_jobs[0].inference_parameters
    assert params is not None and params.to_wire() == {
        "maxTokens": 64,
        "temperature": 1.0,
        "extraBody": "{}",
        "seed": 7,
    }
    slow = ListJobsResponse.model_validate_json(body).batch_inference_jobs[0]
    a, b = job_from_wire(listed.batch_inference_jobs[0]), job_from_wire(slow)
    assert dict(a.parameters) == dict(b.parameters)
    assert msgspec.structs.replace(a, parameters={}) == msgspec.structs.replace(b, parameters={})
    dataset = {"name": "accounts/a/datasets/d", "state": "READY", "exampleCount": "3"}
    dataset |= {"encryptionState": "ENCRYPTION_STATE_PLAINTEXT", "averageTurnCount": 0}
    body = json.dumps({"datasets": [dataset]}).encode()
    assert check(body, decode_datasets, ListDatasetsResponse)
    fast = decode_datasets(body)
    assert fast is not None
    slow_ds = ListDatasetsResponse.model_validate_json(body).datasets[0]
    assert input_from_wire(fast.datasets[0]) == input_from_wire(slow_ds)


@pytest.mark.parametrize(
    "body",
    [
        {"batchInferenceJobs": [{"display_name": "x"}]},  # snake_case: the model accepts it
        {"batchInferenceJobs": [{"inferenceParameters": {"maxTokens": "64"}}]},  # coerced
        {"batchInferenceJobs": [{"jobProgress": {"percent": 5.0}}]},
        {"batchInferenceJobs": [{"state": 5}]},  # refused, with the model's message
        {"totalSize": True},
    ],
)
def test_what_only_the_model_can_decide_is_left_to_it(body: dict[str, Any]) -> None:
    assert decode_jobs(json.dumps(body).encode()) is None


def test_the_structs_mirror_the_wire_models() -> None:
    for model, struct in zip(MODELS, STRUCTS, strict=True):
        fields = dict(zip(struct.__struct_fields__, struct.__struct_encode_fields__, strict=True))
        aliases = {name: f.alias for name, f in model.model_fields.items()}
        if model is Dataset:
            aliases["example_count"] = "exampleCount"  # AliasChoices: the camelCase one first
        assert fields == aliases, model.__name__


def test_a_malformed_page_gives_the_wire_models_message(make_client, scripted) -> None:
    bad = {"batchInferenceJobs": [{"name": "j", "state": 5}]}
    client = make_client(scripted([httpx.Response(200, json=bad)]).handler)
    with pytest.raises(ApiError) as info:
        client.list_jobs()
    assert info.value.status == 200
    assert "malformed response: batchInferenceJobs.0.state: Input should be a valid string" in str(
        info.value
    )
    coerced = {"datasets": [{"name": "d", "exampleCount": "3", "example_count": "9"}]}
    client = make_client(scripted([httpx.Response(200, json=coerced)]).handler)
    [listed] = client.list_datasets()
    assert isinstance(listed, Dataset) and listed.example_count == "3"  # the model decided
