"""Retry paths: which answers are retried, how long the client waits, and when it gives up.

A scripted transport answers; the fake clock records every sleep, so nothing really waits.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from batchops.errors import (
    ApiError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from batchops.providers.fireworks.wire import BatchInferenceJob

JOB = {"name": "accounts/acme/batchInferenceJobs/j1", "state": "JOB_STATE_RUNNING"}


def ok() -> httpx.Response:
    return httpx.Response(200, json=JOB)


def status(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, json={"code": 14, "message": "try later"}, headers=headers)


def top(high: float) -> float:
    """Deterministic jitter: always the top of the range."""
    return high


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_with_backoff(code, make_client, scripted, clock):
    script = scripted([status(code), status(code), ok()])
    client = make_client(script.handler, jitter=top)
    assert client.get_job("j1").state == "JOB_STATE_RUNNING"
    assert len(script.seen) == 3
    assert clock.sleeps == [0.5, 1.0]


def test_backoff_doubles_to_eight_seconds(make_client, scripted, clock):
    script = scripted([status(503)] * 6 + [ok()])
    client = make_client(script.handler, jitter=top, retry_budget=1000)
    client.get_job("j1")
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_default_jitter_stays_within_the_backoff_window(make_client, scripted, clock):
    script = scripted([status(500)] * 5 + [ok()])
    make_client(script.handler).get_job("j1")
    for retry, slept in enumerate(clock.sleeps):
        assert 0.0 <= slept <= min(8.0, 0.5 * 2**retry)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After": "3600"}, 60.0),
    ],
)
def test_retry_after_is_honoured_and_capped(headers, expected, make_client, scripted, clock):
    script = scripted([status(429, **headers), ok()])
    make_client(script.handler, jitter=top).get_job("j1")
    assert clock.sleeps == [expected]
    assert len(script.seen) == 2


def test_retry_after_as_http_date(make_client, scripted, clock):
    import email.utils
    import time

    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    script = scripted([status(503, **{"Retry-After": when}), ok()])
    make_client(script.handler, jitter=top).get_job("j1")
    assert len(clock.sleeps) == 1 and 25 <= clock.sleeps[0] <= 31


def test_connection_errors_are_retried_and_reported_as_status_zero(make_client, scripted, clock):
    script = scripted([httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), ok()])
    calls: list[tuple[str, int]] = []
    client = make_client(script.handler, jitter=top, on_response=lambda m, s: calls.append((m, s)))
    client.get_job("j1")
    assert calls == [("GET", 0), ("GET", 0), ("GET", 200)]
    assert client.requests_total == {0: 2, 200: 1}


def test_gives_up_after_max_retries_with_the_last_error(make_client, scripted):
    script = scripted([status(503)] * 10)
    client = make_client(script.handler, jitter=top, max_retries=3, retry_budget=1000)
    with pytest.raises(ServerError) as info:
        client.get_job("j1")
    assert len(script.seen) == 4
    assert info.value.status == 503 and info.value.retryable


def test_gives_up_when_the_time_budget_is_spent(make_client, scripted, clock):
    script = scripted([status(500)] * 10)
    client = make_client(script.handler, jitter=top, retry_budget=3.0)
    with pytest.raises(ServerError):
        client.get_job("j1")
    assert clock.sleeps == [0.5, 1.0]  # the next wait (2 s) would pass the 3 s budget
    assert len(script.seen) == 3


def test_connection_errors_exhausted_become_transport_error(make_client, scripted):
    script = scripted([httpx.ConnectError("refused")] * 3)
    client = make_client(script.handler, max_retries=2)
    with pytest.raises(TransportError) as info:
        client.get_job("j1")
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert info.value.status == 0


def test_rate_limited_exhausted_carries_retry_after(make_client, scripted):
    script = scripted([status(429, **{"Retry-After": "2"})] * 3)
    client = make_client(script.handler, max_retries=2)
    with pytest.raises(RateLimitedError) as info:
        client.get_job("j1")
    assert info.value.retry_after == 2.0


@pytest.mark.parametrize(
    ("code", "error"),
    [(400, ApiError), (404, NotFoundError), (409, ConflictError), (422, ApiError)],
)
def test_plain_4xx_is_never_retried(code, error, make_client, scripted, clock):
    script = scripted([status(code), ok()])
    with pytest.raises(error):
        make_client(script.handler).get_job("j1")
    assert len(script.seen) == 1 and clock.sleeps == []


def test_501_is_not_retried(make_client, scripted):
    script = scripted([status(501), ok()])
    with pytest.raises(ServerError):
        make_client(script.handler).get_job("j1")
    assert len(script.seen) == 1


def test_create_is_retried_and_a_409_after_it_goes_to_the_caller(make_client, scripted, fake):
    """A create that succeeded but whose answer was lost comes back as 409 on the retry."""

    def answer_lost(request: httpx.Request) -> httpx.Response:
        fake.handler(request)
        raise httpx.ReadTimeout("lost")

    script = scripted([answer_lost, fake.handler])
    client = make_client(script.handler)
    with pytest.raises(ConflictError) as info:
        client.create_job("j1", BatchInferenceJob(model="m", input_dataset_id="d"))
    assert info.value.code == "ALREADY_EXISTS" and info.value.status == 409
    assert list(fake.jobs) == ["j1"]
    assert len(script.seen) == 2


def test_a_429_pauses_every_caller_of_the_client(make_client, scripted, clock):
    """One caller's Retry-After holds back the next request, even from another caller."""
    script = scripted([status(429, **{"Retry-After": "30"}), ok()])
    client = make_client(script.handler, max_retries=0)
    with pytest.raises(RateLimitedError):
        client.get_job("j1")
    start = clock.now
    worker = threading.Thread(target=client.get_job, args=("j1",))
    worker.start()
    worker.join(timeout=10)
    assert clock.now - start == pytest.approx(30.0)
    assert len(script.seen) == 2


def test_token_bucket_limits_the_rate_across_threads(make_client, scripted, clock):
    script = scripted([ok() for _ in range(20)])
    client = make_client(script.handler, max_rate=5.0)
    start = clock.now
    workers = [
        threading.Thread(target=lambda: [client.get_job("j1") for _ in range(5)]) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert len(script.seen) == 20
    # A burst of 5, then 15 more at 5 per second: at least 3 simulated seconds.
    assert clock.now - start >= 3.0 - 1e-9
