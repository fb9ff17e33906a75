"""Error mapping: both body shapes, every status class, and the API key kept out of everything."""

from __future__ import annotations

import logging
import traceback

import httpx
import pytest

from batchops.config import Secret, load_settings
from batchops.errors import (
    ApiError,
    AuthError,
    ConfigError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from batchops.providers.fireworks.factory import client_from_settings
from tests.api.conftest import KEY

PATH = "/v1/accounts/acme/batchInferenceJobs/j1"


def grpc(code: int, number: int, message: str) -> httpx.Response:
    return httpx.Response(code, json={"code": number, "message": message, "details": []})


def openai(code: int, name: str, message: str) -> httpx.Response:
    body = {"error": {"message": message, "param": None, "code": name, "type": "error"}}
    return httpx.Response(code, json={**body, "request_id": "r1"})


CASES = [
    (grpc(404, 5, "resource not found"), NotFoundError, "NOT_FOUND", "resource not found"),
    (grpc(409, 6, "job exists"), ConflictError, "ALREADY_EXISTS", "job exists"),
    (
        grpc(400, 3, "example_count is required"),
        ApiError,
        "INVALID_ARGUMENT",
        "example_count is required",
    ),
    (grpc(401, 16, "no key"), AuthError, "UNAUTHENTICATED", "no key"),
    (
        openai(403, "UNAUTHORIZED", "The API key you provided is invalid."),
        AuthError,
        "UNAUTHORIZED",
        "The API key you provided is invalid.",
    ),
    (grpc(429, 8, "slow down"), RateLimitedError, "RESOURCE_EXHAUSTED", "slow down"),
    (grpc(500, 13, "boom"), ServerError, "INTERNAL", "boom"),
    (
        httpx.Response(502, text="<html>Bad gateway</html>"),
        ServerError,
        "",
        "<html>Bad gateway</html>",
    ),
    (httpx.Response(418, content=b""), ApiError, "", "I'm a teapot"),
]


@pytest.mark.parametrize(("response", "cls", "code", "message"), CASES)
def test_error_shapes_map_to_the_tree(response, cls, code, message, make_client, scripted):
    client = make_client(scripted([response]).handler, max_retries=0)
    with pytest.raises(ApiError) as info:
        client.get_job("accounts/acme/batchInferenceJobs/j1")
    error = info.value
    assert type(error) is cls
    assert (error.method, error.path, error.status) == ("GET", PATH, response.status_code)
    assert (error.code, error.server_message) == (code, message)
    assert str(error).startswith(f"GET {PATH}: HTTP {response.status_code}")


def test_no_response_is_a_transport_error_chained_from_httpx(make_client, scripted):
    client = make_client(scripted([httpx.ConnectError("refused")]).handler, max_retries=0)
    with pytest.raises(TransportError) as info:
        client.delete_dataset("d1")
    assert info.value.method == "DELETE" and info.value.path == "/v1/accounts/acme/datasets/d1"
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert "refused" in str(info.value)


def test_malformed_success_body_is_an_api_error(make_client, scripted):
    client = make_client(scripted([httpx.Response(200, text="not json")]).handler)
    with pytest.raises(ApiError, match="malformed response"):
        client.get_job("j1")


def test_key_is_absent_from_errors_reprs_and_logs(make_client, scripted, caplog):
    caplog.set_level(logging.DEBUG)
    echoing = openai(403, "UNAUTHORIZED", f"bad key {KEY}")
    leaking = httpx.ConnectError(f"proxy said Authorization: Bearer {KEY}")
    client = make_client(scripted([echoing, leaking]).handler, max_retries=0)
    errors = []
    for _ in range(2):
        with pytest.raises(ApiError) as info:
            client.get_job("j1")
        errors.append(info.value)
    rendered = [str(e) + repr(e) + e.server_message + e.code for e in errors]
    rendered += ["".join(traceback.format_exception_only(e)) for e in errors]
    rendered += [repr(client), str(client), caplog.text]
    assert all(KEY not in text for text in rendered)
    assert "**********" in str(errors[0])


def test_client_from_settings_requires_an_account_with_a_key():
    settings = load_settings({"FIREWORKS_API_KEY": KEY})
    with pytest.raises(ConfigError, match="FIREWORKS_ACCOUNT_ID") as info:
        client_from_settings(settings)
    assert KEY not in str(info.value)


def test_client_from_settings_builds_a_client():
    env = {"FIREWORKS_API_KEY": KEY, "FIREWORKS_ACCOUNT_ID": "acme"}
    with client_from_settings(load_settings(env)) as client:
        assert client.account_id == "acme" and client.base_url == "https://api.fireworks.ai"
        assert KEY not in repr(client)
    with client_from_settings(load_settings({}), base_url="http://127.0.0.1:8000") as local:
        assert local.account_id == "local"


def test_plain_http_base_url_with_a_key_is_refused_unless_loopback(make_client, scripted):
    handler = scripted([]).handler
    with pytest.raises(ConfigError, match="plain http"):
        make_client(handler, base_url="http://api.example.com")
    make_client(handler, base_url="http://127.0.0.1:9")
    make_client(handler, base_url="http://api.example.com", allow_insecure_urls=True)
    make_client(handler, base_url="http://api.example.com", api_key=None)
    with pytest.raises(ConfigError):
        make_client(handler, base_url="ftp://api.example.com")


def test_secret_never_renders():
    assert KEY not in repr(Secret(KEY)) + str(Secret(KEY))
