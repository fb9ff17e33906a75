"""Fixtures for the client tests: a fake clock, an in-memory Fireworks behind httpx.MockTransport,
and a scripted transport for retry and error paths. They replace seams (transports, clocks), never
client methods. The fake records what it was sent: the state of the world these tests check.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from batchops.config import Secret
from batchops.providers.fireworks.client import FireworksClient

API = "https://api.fireworks.test"
STORAGE = "storage.googleapis.test"
KEY = "fw-SECRET-key-0123456789"
ACCOUNT = "acme"


@dataclass
class FakeClock:
    """monotonic() and sleep() that only move when slept: tests never really wait."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)


@dataclass
class Seen:
    method: str
    host: str
    path: str
    params: dict[str, str]
    authorization: str | None
    headers: dict[str, str]


def _json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body)


def _not_found() -> httpx.Response:
    return _json(404, {"code": 5, "message": "resource not found", "details": []})


class FakeFireworks:
    """Just enough of the service and of signed-URL storage, in memory."""

    API, STORAGE, KEY, ACCOUNT = API, STORAGE, KEY, ACCOUNT

    def __init__(self, *, storage_scheme: str = "https") -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, bytes]] = {}  # dataset id -> name -> bytes
        self.registered: dict[str, dict[str, int]] = {}  # from :getUploadEndpoint
        self.download_keys: dict[str, dict[str, str]] = {}  # dataset -> key -> file name override
        self.seen: list[Seen] = []
        self.storage_scheme = storage_scheme
        self.gzip_downloads = False  # storage that ignores Accept-Encoding: identity

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.seen.append(
            Seen(
                request.method,
                request.url.host,
                request.url.path,
                dict(request.url.params),
                request.headers.get("authorization"),
                dict(request.headers),
            )
        )
        if request.url.host == STORAGE:
            return self._storage(request, body)
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return _json(
                403,
                {
                    "error": {
                        "message": "The API key you provided is invalid.",
                        "code": "UNAUTHORIZED",
                        "type": "error",
                    }
                },
            )
        parts = request.url.path.split("/")  # '', v1, accounts, acme, collection, [id[:verb]]
        assert parts[:4] == ["", "v1", "accounts", ACCOUNT], request.url.path
        collection, rest = parts[4], parts[5:]
        if collection == "batchInferenceJobs":
            return self._jobs(request, rest, body)
        return self._datasets(request, rest, body)

    # -- jobs -----------------------------------------------------------------------------------

    def _jobs(self, request: httpx.Request, rest: list[str], body: bytes) -> httpx.Response:
        if not rest and request.method == "POST":
            job_id = request.url.params["batchInferenceJobId"]
            if job_id in self.jobs:
                return _json(409, {"code": 6, "message": f"job {job_id} already exists"})
            job = {
                **json.loads(body),
                "name": f"accounts/{ACCOUNT}/batchInferenceJobs/{job_id}",
                "state": "JOB_STATE_VALIDATING",
            }
            self.jobs[job_id] = job
            return _json(200, job)
        if not rest:
            return self._page(request, "batchInferenceJobs", list(self.jobs.values()))
        job = self.jobs.get(rest[0])
        if job is None:
            return _not_found()
        if request.method == "DELETE":
            del self.jobs[rest[0]]
            return _json(200, {})
        return _json(200, job)

    def _page(self, request: httpx.Request, key: str, items: list[Any]) -> httpx.Response:
        size = min(int(request.url.params.get("pageSize", "50")), 200)
        start = int(request.url.params.get("pageToken") or 0)
        chunk = items[start : start + size]
        more = start + size < len(items)
        return _json(200, {key: chunk, "nextPageToken": str(start + size) if more else ""})

    # -- datasets -------------------------------------------------------------------------------

    def _datasets(self, request: httpx.Request, rest: list[str], body: bytes) -> httpx.Response:
        if not rest and request.method == "POST":
            payload = json.loads(body)
            ds_id = payload["datasetId"]
            if ds_id in self.datasets:
                return _json(409, {"code": 6, "message": "dataset already exists"})
            self.datasets[ds_id] = {
                **payload["dataset"],
                "state": "UPLOADING",
                "name": f"accounts/{ACCOUNT}/datasets/{ds_id}",
            }
            return _json(200, self.datasets[ds_id])
        if not rest:
            return self._page(request, "datasets", list(self.datasets.values()))
        ds_id, _, verb = rest[0].partition(":")
        if ds_id not in self.datasets:
            return _not_found()
        if verb:
            return getattr(self, "_verb_" + verb)(request, ds_id, body)  # type: ignore[no-any-return]
        if request.method == "DELETE":
            del self.datasets[ds_id]
            return _json(200, {})
        return _json(200, self.datasets[ds_id])

    def _verb_upload(self, request: httpx.Request, ds_id: str, body: bytes) -> httpx.Response:
        assert int(request.headers["content-length"]) == len(body)
        message = email.message_from_bytes(
            b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + body,
            policy=email.policy.HTTP,
        )
        (part,) = message.iter_parts()  # type: ignore[attr-defined]
        assert part.get_param("name", header="content-disposition") == "file"
        name, data = part.get_filename(), part.get_payload(decode=True)
        self.files.setdefault(ds_id, {})[name] = data
        self.datasets[ds_id]["state"] = "READY"
        return _json(
            200,
            {
                "id": f"accounts/{ACCOUNT}/datasets/{ds_id}",
                "object": "file",
                "bytes": len(data),
                "created_at": 1,
                "filename": name,
            },
        )

    def _verb_getUploadEndpoint(self, _r: httpx.Request, ds_id: str, body: bytes) -> httpx.Response:
        sizes = json.loads(body)["filenameToSize"]
        self.registered[ds_id] = {name: int(size) for name, size in sizes.items()}
        urls = {name: self._signed(f"up/{ds_id}/{name}") for name in sizes}
        return _json(200, {"filenameToSignedUrls": urls})

    def _verb_validateUpload(self, _r: httpx.Request, ds_id: str, body: bytes) -> httpx.Response:
        held = self.files.get(ds_id, {})
        if {n: len(b) for n, b in held.items()} != self.registered.get(ds_id):
            return _json(400, {"code": 9, "message": "uploaded files do not match"})
        self.datasets[ds_id]["state"] = "READY"
        return _json(200, {})

    def _verb_getDownloadEndpoint(
        self, request: httpx.Request, ds_id: str, body: bytes
    ) -> httpx.Response:
        assert request.method == "GET" and body == b"", "getDownloadEndpoint is a body-less GET"
        keys = self.download_keys.get(ds_id) or {
            f"dataset/{ds_id}/{name}": name for name in self.files.get(ds_id, {})
        }
        urls = {key: self._signed(f"down/{ds_id}/{name}") for key, name in keys.items()}
        return _json(200, {"filenameToSignedUrls": urls})

    # -- storage --------------------------------------------------------------------------------

    def _signed(self, path: str) -> str:
        return f"{self.storage_scheme}://{STORAGE}/bucket/{path}?X-Goog-Signature=sig123"

    def _storage(self, request: httpx.Request, body: bytes) -> httpx.Response:
        _, _, direction, ds_id, name = request.url.path.split("/", 4)
        if request.method == "PUT" and direction == "up":
            size = len(body)
            assert request.headers["content-type"] == "application/octet-stream"
            assert request.headers["x-goog-content-length-range"] == f"{size},{size}"
            self.files.setdefault(ds_id, {})[name] = body
            return httpx.Response(200)
        data = self.files.get(ds_id, {}).get(name)
        if data is None:
            return httpx.Response(404, text="<Error><Code>NoSuchKey</Code></Error>")
        if self.gzip_downloads:
            return httpx.Response(
                200, content=gzip.compress(data), headers={"content-encoding": "gzip"}
            )
        return httpx.Response(200, content=data)


class Scripted:
    """A transport answering from a script: each item is a Response, an exception, or a callable."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.seen: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.seen.append(request)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            return item(request)  # type: ignore[no-any-return]
        return item  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake() -> FakeFireworks:
    return FakeFireworks()


@pytest.fixture
def scripted() -> type[Scripted]:
    return Scripted


@pytest.fixture
def fake_class() -> type[FakeFireworks]:
    return FakeFireworks


ClientFactory = Callable[..., FireworksClient]


@pytest.fixture
def make_client(clock: FakeClock) -> Iterator[ClientFactory]:
    """Build clients on a MockTransport with the fake clock; all are closed after the test."""
    made: list[FireworksClient] = []

    def build(
        handler: Callable[[httpx.Request], httpx.Response], **options: Any
    ) -> FireworksClient:
        options.setdefault("base_url", API)
        options.setdefault("account_id", ACCOUNT)
        options.setdefault("api_key", Secret(KEY))
        client = FireworksClient(
            transport=httpx.MockTransport(handler), sleep=clock.sleep, clock=clock, **options
        )
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()
