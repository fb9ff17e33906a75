"""Retries and rate limiting; ``batchops.providers.fireworks.client`` calls ``call_with_retries``.

One ``RateLimiter`` is shared by every thread using a client: an optional token bucket plus a shared
"not before" time, so a 429 with ``Retry-After`` seen by one thread pauses them all. Backoff is
exponential with full jitter (0.5 s doubling to 8 s), bounded by a retry count and a time budget.
Time goes through an injectable clock and sleep, so tests never really wait.
"""

from __future__ import annotations

import email.utils
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from batchops.errors import ApiError, TransportError

T = TypeVar("T")

BASE_DELAY = 0.5
MAX_DELAY = 8.0
MAX_RETRY_AFTER = 60.0  # a server asking for longer is capped, as the official SDK does
RETRY_STATUSES = frozenset({408, 429})
NEVER_RETRY_STATUSES = frozenset({501})  # UNIMPLEMENTED will not start working on a retry

Clock = Callable[[], float]
Sleep = Callable[[float], None]


def is_retryable(error: ApiError) -> bool:
    """408, 429, 5xx (but 501) and no response at all; never a plain 4xx such as 409."""
    if isinstance(error, TransportError):
        return True
    if error.status in NEVER_RETRY_STATUSES:
        return False
    return error.status in RETRY_STATUSES or error.status >= 500


def parse_retry_after(headers: Mapping[str, str], *, wall_now: float) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date), capped.

    ``wall_now`` is the wall-clock time (``time.time()``) an HTTP date is compared with.
    """
    value = _retry_after_seconds(headers, wall_now)
    if value is None or value < 0:
        return None
    return min(value, MAX_RETRY_AFTER)


def _retry_after_seconds(headers: Mapping[str, str], wall_now: float) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        text = headers.get(name)
        if not text:
            continue
        try:
            return float(text) / scale
        except ValueError:
            pass
        if scale == 1.0:
            return _http_date_delta(text, wall_now)
    return None


def _http_date_delta(text: str, wall_now: float) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(text).timestamp() - wall_now
    except (TypeError, ValueError, IndexError):
        return None


@dataclass
class RateLimiter:
    """A token bucket (when ``rate`` is set) and a shared pause, safe to use from many threads."""

    rate: float | None
    clock: Clock
    sleep: Sleep
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _tokens: float = 0.0
    _stamp: float | None = None
    _not_before: float = float("-inf")

    @property
    def capacity(self) -> float:
        # One second's worth of requests may go out in a burst.
        return max(1.0, self.rate or 1.0)

    def acquire(self) -> None:
        """Block until a request may be sent."""
        while True:
            with self._lock:
                wait = self._take()
            if wait <= 0:
                return
            self.sleep(wait)

    def pause_until(self, when: float) -> None:
        """Every thread holds off until ``when`` (a clock() value)."""
        with self._lock:
            self._not_before = max(self._not_before, when)

    def _take(self) -> float:
        """Consume a token and return 0, or return how long to wait; called under the lock."""
        now = self.clock()
        if now < self._not_before:
            return self._not_before - now
        if self.rate is None:
            return 0.0
        self._refill(now)
        if self._tokens >= 1.0 - 1e-9:  # float dust must not leave a waiter spinning forever
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.rate

    def _refill(self, now: float) -> None:
        assert self.rate is not None
        if self._stamp is None:
            self._tokens = self.capacity
        else:
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and for how long to retry; ``jitter`` is injectable for tests."""

    max_retries: int
    budget: float
    clock: Clock
    sleep: Sleep
    jitter: Callable[[float], float] = field(default=lambda high: random.uniform(0.0, high))

    def backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(8 s, 0.5 s * 2**retry)]."""
        return self.jitter(min(MAX_DELAY, BASE_DELAY * 2**retry))


def call_with_retries(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    limiter: RateLimiter | None = None,
    on_retry: Callable[[], None] | None = None,
    deadline: float | None = None,
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or the count or time budget runs out.

    ``attempt`` raises ``ApiError``s that carry ``retry_after``; the last one is re-raised when
    giving up. ``on_retry`` runs before each new attempt (transfers rewind their progress there).
    No wait ends past ``deadline`` (a ``policy.clock()`` time): then the last error is raised.
    """
    start = policy.clock()
    retry = 0
    while True:
        if limiter is not None:
            limiter.acquire()
        try:
            return attempt()
        except ApiError as error:
            if error.retry_after is not None and limiter is not None:
                # Every thread holds off, whether or not this one retries.
                limiter.pause_until(policy.clock() + error.retry_after)
            delay = _next_delay(error, retry, policy, start)
            if delay is not None and deadline is not None and policy.clock() + delay > deadline:
                delay = None
            if delay is None:
                raise
            policy.sleep(delay)
            retry += 1
            if on_retry is not None:
                on_retry()


def _next_delay(error: ApiError, retry: int, policy: RetryPolicy, start: float) -> float | None:
    """How long to wait before the next attempt, or None to give up."""
    if not is_retryable(error) or retry >= policy.max_retries:
        return None
    delay = error.retry_after if error.retry_after is not None else policy.backoff(retry)
    if policy.clock() - start + delay > policy.budget:
        return None
    return delay
