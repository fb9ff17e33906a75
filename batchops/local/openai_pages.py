"""Rendered pages of the OpenAI list routes (``GET /v1/batches``, ``GET /v1/files``), kept while
nothing they show has changed.

An observe pass lists every batch and every file again, and once the batches have ended the
answer is the same bytes each time. A page is a pure function of the ``jobs`` rows of the OpenAI
account and of the ``openai_files`` rows; SQLite triggers count every write to them
(``openai_changes``, in ``db.SCHEMA``), whichever process sharing the data folder makes it. A page
rendered at one count is served again while the counts stand; any write (a batch created,
advanced or cancelled, a file uploaded or deleted) drops every page of that backend. The counts
are read before the page is built, so a write that races the build can only cause a miss.
Used by ``routes_openai``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable

from batchops.local.backend import Backend

MAX_PAGES = 256  # pages kept per backend (a page of 100 batches is about 100 KB)


class PageCache:
    """One backend's rendered pages, for the counts they were rendered at."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: tuple[int, ...] = ()
        self._pages: dict[Hashable, bytes] = {}

    def get(self, counts: tuple[int, ...], key: Hashable) -> bytes | None:
        with self._lock:
            return self._pages.get(key) if counts == self._counts else None

    def put(self, counts: tuple[int, ...], key: Hashable, body: bytes) -> None:
        with self._lock:
            if counts != self._counts:  # something was written: every page is stale
                self._counts, self._pages = counts, {}
            if len(self._pages) >= MAX_PAGES:
                self._pages.clear()
            self._pages[key] = body


_CACHES: weakref.WeakKeyDictionary[Backend, PageCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def _cache_of(backend: Backend) -> PageCache:
    with _CACHES_LOCK:
        cache = _CACHES.get(backend)
        if cache is None:
            cache = _CACHES[backend] = PageCache()
        return cache


def counts(backend: Backend) -> tuple[int, ...]:
    """The write counts of the batches and the files tables, in that order."""
    rows = backend.db.all("SELECT n FROM openai_changes ORDER BY name")
    return tuple(row[0] for row in rows)


def page(backend: Backend, key: Hashable, build: Callable[[], bytes]) -> bytes:
    """The page ``key`` (the route and its query), built by ``build`` unless it is kept for the
    current counts."""
    cache, now = _cache_of(backend), counts(backend)
    body = cache.get(now, key)
    if body is None:
        body = build()
        cache.put(now, key, body)
    return body
