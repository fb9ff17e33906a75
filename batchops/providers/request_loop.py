"""The bounded request loop both provider clients share: retries, the rate limiter, the command's
deadline, and list calls followed page by page.

Used by ``providers.fireworks.client`` and ``providers.openai.client``: each builds its own
requests and maps its own errors, and runs every attempt through ``RequestLoop.run`` (retries
with backoff and ``Retry-After`` under one ``RateLimiter``, none past the deadline) and every
list through ``pages`` (a cursor followed until the server says it is done, at most
``max_pages`` pages, and a cursor seen twice is an error rather than a loop forever).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

from batchops.errors import ApiError, DeadlineExceededError
from batchops.providers.fireworks.retry import (
    Clock,
    RateLimiter,
    RetryPolicy,
    Sleep,
    call_with_retries,
)

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")
P = TypeVar("P")


class RequestLoop:
    """One client's retry policy, rate limiter and deadline (``time.monotonic`` seconds)."""

    def __init__(
        self,
        *,
        max_retries: int,
        retry_budget: float,
        max_rate: float | None,
        sleep: Sleep,
        clock: Clock,
        jitter: Callable[[float], float] | None,
    ) -> None:
        extra = {} if jitter is None else {"jitter": jitter}
        self.policy = RetryPolicy(
            max_retries=max_retries, budget=retry_budget, clock=clock, sleep=sleep, **extra
        )
        self.limiter = RateLimiter(rate=max_rate, clock=clock, sleep=sleep)
        # The command's deadline: no call, retry or wait goes past it.
        self.deadline: float | None = None

    def run(
        self,
        attempt: Callable[[], T],
        method: str,
        path: str,
        *,
        limited: bool = True,
        on_retry: Callable[[], None] | None = None,
    ) -> T:
        """``attempt`` with retries (``limited``: under the rate limiter, as API calls are; signed
        URL transfers are not), none of them past the deadline."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineExceededError("the command's --timeout ran out", method=method, path=path)
        limiter = self.limiter if limited else None
        try:
            return call_with_retries(
                attempt, self.policy, limiter=limiter, on_retry=on_retry, deadline=self.deadline
            )
        except ApiError as exc:
            if self.deadline is not None and time.monotonic() >= self.deadline - 0.001:
                raise DeadlineExceededError(
                    "the command's --timeout ran out", method=method, path=path
                ) from exc
            raise


def pages(
    fetch: Callable[[str | None], P],
    cursor_of: Callable[[P], str | None],
    *,
    path: str,
    max_pages: int,
    cursor: str = "page token",
) -> Iterator[P]:
    """Every page of a list call: ``fetch(None)``, then ``fetch(cursor_of(page))`` until the
    cursor is empty; more than ``max_pages`` pages, or a cursor seen twice, is an ApiError."""
    after: str | None = None
    seen: set[str] = set()
    for _ in range(max_pages):
        page = fetch(after)
        yield page
        after = cursor_of(page)
        if not after:
            return
        if after in seen:  # a server bug would otherwise loop forever
            raise ApiError(f"the server repeated a {cursor}", method="GET", path=path, status=200)
        seen.add(after)
    raise ApiError(
        f"the server sent more than {max_pages} pages; refusing to loop",
        method="GET",
        path=path,
        status=200,
    )


class LoopClient:
    """What both provider clients share around their requests: the request loop whose deadline
    bounds every call, the HTTP client, and closing it (also as a context manager)."""

    _loop: RequestLoop
    _http: httpx.Client

    @property
    def deadline(self) -> float | None:
        """The command's deadline (time.monotonic); no call, retry or wait goes past it."""
        return self._loop.deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self._loop.deadline = value

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
