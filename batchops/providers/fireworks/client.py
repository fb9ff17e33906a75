"""The Fireworks REST client: jobs, datasets, uploads and downloads (see fireworks-api.md).

Used by the reconciler, apply and results layers, against the real service or the embedded local
backend alike. One ``httpx.Client`` (one connection pool) carries everything; the Authorization
header is added per request to API calls only, so signed storage URLs never see the key. Every
call goes through ``call_with_retries`` and, for API calls, one shared ``RateLimiter``.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx

from batchops import deadline as dl
from batchops.config import Secret
from batchops.errors import ApiError, ConfigError
from batchops.providers.fireworks.names import DIRECT_UPLOAD_LIMIT, resource_id
from batchops.providers.fireworks.pages import (
    DatasetsPage,
    JobsPage,
    ListedDataset,
    ListedJob,
    decode_datasets,
    decode_jobs,
)
from batchops.providers.fireworks.responses import error_from_exception, error_from_response, scrub
from batchops.providers.fireworks.retry import Clock, Sleep
from batchops.providers.fireworks.transfers import (
    DOWNLOAD_HEADERS,
    Progress,
    ProgressFn,
    check_signed_url,
    download_targets,
    file_chunks,
    is_loopback,
    multipart_file,
    write_atomically,
)
from batchops.providers.fireworks.transport import http_client
from batchops.providers.request_loop import LoopClient, RequestLoop, pages

if TYPE_CHECKING:  # the wire models (pydantic) are imported by the calls that send or read one
    from pydantic import BaseModel

    from batchops.providers.fireworks.wire import (
        BatchInferenceJob,
        Dataset,
        ListDatasetsResponse,
        ListJobsResponse,
        UploadResponse,
    )

M = TypeVar("M", bound="BaseModel")
P = TypeVar("P")

PAGE_SIZE = 200  # the service's maximum
MAX_PAGES = 10_000  # 2 million resources: more pages than any account holds is a server loop
MAX_RESPONSE_BYTES = 64 * 2**20  # an API answer (a page of 200 jobs is ~200 KB); files stream
MIN_TRANSFER_RATE = 32 * 2**10  # bytes/s an upload or download must keep up (batchops/deadline.py)
URL_MAX_AGE = 300.0  # download URLs live ~10 minutes; refresh well before, between files
_HTTP_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)
_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})  # wire body


class FireworksClient(LoopClient):
    """A synchronous, thread-safe client for one account. Close it, or use it as a context."""

    def __init__(
        self,
        *,
        base_url: str,
        account_id: str,
        api_key: Secret | None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
        max_retries: int = 6,
        retry_budget: float = 120.0,
        max_rate: float | None = None,
        on_response: Callable[[str, int], None] | None = None,
        allow_insecure_urls: bool | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.monotonic,
        jitter: Callable[[float], float] | None = None,
    ) -> None:
        self.account_id = account_id
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._key = api_key
        self._allow_http = _check_base_url(self.base_url, api_key, allow_insecure_urls)
        self._clock = clock
        self._on_response = on_response
        self._loop = RequestLoop(
            max_retries=max_retries,
            retry_budget=retry_budget,
            max_rate=max_rate,
            sleep=sleep,
            clock=clock,
            jitter=jitter,
        )
        self._counts: collections.Counter[int] = collections.Counter()
        self._counts_lock = threading.Lock()
        self._http = http_client(transport, timeout)

    # -- lifecycle (deadline, close, context manager: ``LoopClient``) ----------------------------

    def __repr__(self) -> str:
        return f"FireworksClient(base_url={self.base_url!r}, account_id={self.account_id!r})"

    @property
    def requests_total(self) -> dict[int, int]:
        """HTTP responses received so far, by status (0 = no response)."""
        with self._counts_lock:
            return dict(self._counts)

    # -- batch inference jobs --------------------------------------------------------------------

    def create_job(self, job_id: str, job: BatchInferenceJob) -> BatchInferenceJob:
        from batchops.providers.fireworks.wire import BatchInferenceJob

        params = {"batchInferenceJobId": resource_id(job_id)}
        response = self._api("POST", self._jobs(), params=params, json=job.to_wire())
        created = _parse(BatchInferenceJob, response, "POST", self._jobs())
        self._redact(created)
        return created

    def get_job(self, job_id: str) -> BatchInferenceJob:
        from batchops.providers.fireworks.wire import BatchInferenceJob

        path = self._jobs(job_id)
        job = _parse(BatchInferenceJob, self._api("GET", path), "GET", path)
        self._redact(job)
        return job

    def list_jobs(self, *, filter: str | None = None) -> list[ListedJob | BatchInferenceJob]:
        """Every job, or those matching an AIP-160 ``filter`` (see ``_pages``). Pages come
        back as ``pages.ListedJob``s, or as the wire model where only it can decide."""
        pages = self._pages(self._jobs(), _jobs_page, filter)
        jobs = [job for page in pages for job in page.batch_inference_jobs]
        for job in jobs:
            self._redact(job)
        return jobs

    def _redact(self, job: ListedJob | BatchInferenceJob) -> None:
        """Remove the key from the job's status message, should a server echo it."""
        if job.status is not None and job.status.message and self._key is not None:
            job.status.message = scrub(job.status.message, self._key.reveal())

    def delete_job(self, job_id: str) -> None:
        self._api("DELETE", self._jobs(job_id))

    # -- datasets --------------------------------------------------------------------------------

    def create_dataset(self, dataset_id: str, dataset: Dataset) -> Dataset:
        from batchops.providers.fireworks.wire import CreateDatasetRequest, Dataset

        body = CreateDatasetRequest(dataset_id=resource_id(dataset_id), dataset=dataset)
        response = self._api("POST", self._datasets(), json=body.to_wire())
        return _parse(Dataset, response, "POST", self._datasets())

    def get_dataset(self, dataset_id: str) -> Dataset:
        from batchops.providers.fireworks.wire import Dataset

        path = self._datasets(dataset_id)
        return _parse(Dataset, self._api("GET", path), "GET", path)

    def list_datasets(self, *, filter: str | None = None) -> list[ListedDataset | Dataset]:
        """Every dataset, or those matching an AIP-160 ``filter`` (see ``_pages``)."""
        pages = self._pages(self._datasets(), _datasets_page, filter)
        return [dataset for page in pages for dataset in page.datasets]

    def delete_dataset(self, dataset_id: str) -> None:
        self._api("DELETE", self._datasets(dataset_id))

    # -- uploads ---------------------------------------------------------------------------------

    def upload_file(
        self, dataset_id: str, path: Path, *, progress: ProgressFn | None = None
    ) -> UploadResponse:
        """Direct multipart ``:upload`` (the service takes up to 150 MB this way), streamed."""
        from batchops.providers.fireworks.wire import UploadResponse

        api_path = self._datasets(dataset_id, ":upload")
        tracker = Progress(progress)

        def body() -> tuple[dict[str, str], Any]:
            return multipart_file(path, tracker)

        response = self._api("POST", api_path, body=body, on_retry=tracker.rewind)
        return _parse(UploadResponse, response, "POST", api_path)

    def get_upload_endpoint(
        self, dataset_id: str, filename_to_size: Mapping[str, int]
    ) -> dict[str, str]:
        """One signed PUT URL per file; each call replaces the dataset's registered file set."""
        from batchops.providers.fireworks.wire import GetUploadEndpointRequest, SignedUrlsResponse

        path = self._datasets(dataset_id, ":getUploadEndpoint")
        sizes = {name: str(size) for name, size in filename_to_size.items()}
        body = GetUploadEndpointRequest(filename_to_size=sizes).to_wire()
        response = self._api("POST", path, json=body)
        return _parse(SignedUrlsResponse, response, "POST", path).filename_to_signed_urls

    def validate_upload(self, dataset_id: str) -> None:
        self._api("POST", self._datasets(dataset_id, ":validateUpload"), json={})

    def upload_dataset_files(
        self, dataset_id: str, files: Sequence[Path], *, progress: ProgressFn | None = None
    ) -> None:
        """Upload a dataset: ``:upload`` for one small file, else signed URL PUTs + validate."""
        sizes = _sizes_by_name(files)
        if len(files) == 1 and sizes[files[0].name] <= DIRECT_UPLOAD_LIMIT:
            self.upload_file(dataset_id, files[0], progress=progress)
            return
        urls = self.get_upload_endpoint(dataset_id, sizes)  # one call: it replaces the file set
        missing = sorted(set(sizes) - set(urls))
        if missing:
            raise ApiError(f"the server sent no upload URL for {missing}")
        for file in files:
            self._put_signed(urls[file.name], file, sizes[file.name], progress)
        self.validate_upload(dataset_id)

    # -- downloads -------------------------------------------------------------------------------

    def get_download_endpoint(self, dataset_id: str, *, lineage: bool = False) -> dict[str, str]:
        """Signed GET URLs by file key; a body-less GET, as the live service requires."""
        from batchops.providers.fireworks.wire import SignedUrlsResponse

        path = self._datasets(dataset_id, ":getDownloadEndpoint")
        params = {"downloadLineage": "true"} if lineage else None
        response = self._api("GET", path, params=params)
        return _parse(SignedUrlsResponse, response, "GET", path).filename_to_signed_urls

    def download_dataset(
        self,
        dataset_id: str,
        dest: Path,
        *,
        lineage: bool = False,
        progress: ProgressFn | None = None,
    ) -> list[Path]:
        """Download every file into ``dest/<datasetId>/...``; returns the paths written."""
        bare = resource_id(dataset_id)
        urls = self.get_download_endpoint(bare, lineage=lineage)
        fetched = self._clock()
        targets = download_targets(dest, urls, bare)  # all names checked before any write
        for key, target in targets.items():
            if self._clock() - fetched > URL_MAX_AGE:
                urls, fetched = self.get_download_endpoint(bare, lineage=lineage), self._clock()
            if key not in urls:
                raise ApiError(f"the server no longer offers {key!r} for download")
            self._get_signed(urls[key], target, progress)
        return list(targets.values())

    # -- plumbing --------------------------------------------------------------------------------

    def _jobs(self, job_id: str | None = None) -> str:
        return self._resource_path("batchInferenceJobs", job_id, "")

    def _datasets(self, dataset_id: str | None = None, verb: str = "") -> str:
        return self._resource_path("datasets", dataset_id, verb)

    def _resource_path(self, collection: str, name: str | None, verb: str) -> str:
        account = quote(self.account_id, safe="")
        path = f"/v1/accounts/{account}/{collection}"
        if name is not None:
            path += "/" + quote(resource_id(name), safe="")
        return path + verb

    def _pages(
        self, path: str, decode: Callable[[httpx.Response, str], P], filter: str | None = None
    ) -> list[P]:
        """Every page of a list call, following ``nextPageToken`` until it is empty. A server
        that refuses the ``filter`` (400) is asked again without it: the caller's answer is
        then a superset, which it narrows itself."""
        if filter:
            try:
                return self._pages_of(path, decode, {"filter": filter})
            except ApiError as exc:
                if exc.status != 400:
                    raise
        return self._pages_of(path, decode, {})

    def _pages_of(
        self, path: str, decode: Callable[[httpx.Response, str], P], extra: dict[str, str]
    ) -> list[P]:
        def fetch(token: str | None) -> P:
            params = {"pageSize": str(PAGE_SIZE), **extra}
            if token:
                params["pageToken"] = token
            return decode(self._api("GET", path, params=params), path)

        return list(
            pages(
                fetch,
                lambda page: getattr(page, "next_page_token", None),
                path=path,
                max_pages=MAX_PAGES,
            )
        )

    def _api(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        body: Callable[[], tuple[dict[str, str], Any]] | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """One API call with retries; ``body`` builds a fresh streamed body for each attempt."""
        url = self.base_url + path

        def attempt() -> httpx.Response:
            headers, content = body() if body is not None else ({}, None)
            request = self._http.build_request(
                method,
                url,
                params=params,
                json=json,
                content=content,
                headers={**headers, **self._auth_headers()},
            )
            rate = MIN_TRANSFER_RATE if body is not None else None  # an upload may be big
            with dl.within(hard=self.deadline, timeout=self._timeout, min_rate=rate):
                return self._bounded(self._send(request, path, stream=True), method, path)

        return self._loop.run(attempt, method, path, on_retry=on_retry)

    def _bounded(self, response: httpx.Response, method: str, path: str) -> httpx.Response:
        """The response read whole, refused past MAX_RESPONSE_BYTES (a JSON answer is held in
        memory to be parsed: a server sending a gigabyte would exhaust it)."""
        try:
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > MAX_RESPONSE_BYTES:
                raise self._too_big(method, path, response.status_code)
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise self._too_big(method, path, response.status_code)
                chunks.append(chunk)
        except _HTTP_ERRORS as exc:
            raise self._translate(exc, method, path) from exc
        finally:
            response.close()
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _FRAMING]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=b"".join(chunks),
            request=response.request,
        )

    @staticmethod
    def _too_big(method: str, path: str, status: int) -> ApiError:
        message = f"response larger than {MAX_RESPONSE_BYTES:,} bytes; refused"
        return ApiError(message, method=method, path=path, status=status)

    def _put_signed(self, url: str, file: Path, size: int, progress: ProgressFn | None) -> None:
        """PUT one file to a signed URL: no credentials, headers that are part of the signature."""
        target = check_signed_url(url, allow_http=self._allow_http)
        label = _label(target)
        tracker = Progress(progress)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "X-Goog-Content-Length-Range": f"{size},{size}",
        }

        def attempt() -> None:
            request = self._http.build_request(
                "PUT", target, headers=headers, content=file_chunks(file, tracker)
            )
            with dl.within(hard=self.deadline, timeout=self._timeout, min_rate=MIN_TRANSFER_RATE):
                self._bounded(self._send(request, label, stream=True), "PUT", label)

        self._loop.run(attempt, "PUT", label, limited=False, on_retry=tracker.rewind)

    def _get_signed(self, url: str, target: Path, progress: ProgressFn | None) -> None:
        """Stream one signed URL into ``target`` (temp file, then rename); retried whole."""
        parsed = check_signed_url(url, allow_http=self._allow_http)
        label = _label(parsed)
        tracker = Progress(progress)

        def attempt() -> None:
            request = self._http.build_request("GET", parsed, headers=DOWNLOAD_HEADERS)
            limits = dl.within(
                hard=self.deadline, timeout=self._timeout, min_rate=MIN_TRANSFER_RATE
            )
            with limits:
                response = self._send(request, label, stream=True)
                try:
                    write_atomically(response, target, tracker)
                except _HTTP_ERRORS as exc:
                    raise self._translate(exc, "GET", label) from exc
                finally:
                    response.close()

        self._loop.run(attempt, "GET", label, limited=False, on_retry=tracker.rewind)

    def _send(self, request: httpx.Request, path: str, *, stream: bool) -> httpx.Response:
        """Send once; return a 2xx response or raise the mapped error."""
        try:
            response = self._http.send(request, stream=stream)
        except _HTTP_ERRORS as exc:
            self._record(request.method, 0)
            raise self._translate(exc, request.method, path) from exc
        self._record(request.method, response.status_code)
        if response.is_success:
            return response
        raise self._error_for(response, request.method, path)

    def _error_for(self, response: httpx.Response, method: str, path: str) -> ApiError:
        try:
            response.read()
        except _HTTP_ERRORS as exc:
            return self._translate(exc, method, path)
        finally:
            response.close()
        secret = self._key.reveal() if self._key else None
        return error_from_response(
            response, method=method, path=path, secret=secret, wall_now=time.time()
        )

    def _translate(self, exc: Exception, method: str, path: str) -> ApiError:
        secret = self._key.reveal() if self._key else None
        return error_from_exception(exc, method=method, path=path, secret=secret)

    def _record(self, method: str, status: int) -> None:
        with self._counts_lock:
            self._counts[status] += 1
        if self._on_response is not None:
            self._on_response(method, status)

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.reveal()}"} if self._key else {}


def _check_base_url(base_url: str, api_key: Secret | None, allow_insecure: bool | None) -> bool:
    """Validate the base URL; return whether plain-http signed URLs are acceptable."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"invalid base URL {base_url!r}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"the base URL must be http(s)://host, not {base_url!r}")
    local_http = url.scheme == "http" and is_loopback(url.host)
    if url.scheme == "http" and not local_http and api_key and allow_insecure is not True:
        raise ConfigError(
            f"refusing to send the API key over plain http to {url.host}; use https "
            "(allow_insecure_urls=True overrides)"
        )
    return local_http if allow_insecure is None else allow_insecure


def _sizes_by_name(files: Sequence[Path]) -> dict[str, int]:
    """Basename -> size; the dataset API stores basenames only, so they must be distinct."""
    if not files:
        raise ValueError("no files to upload")
    sizes = {file.name: file.stat().st_size for file in files}
    if len(sizes) != len(files):
        raise ValueError("dataset files must have distinct base names")
    return sizes


def _label(url: httpx.URL) -> str:
    """How a signed URL appears in errors: host and path, never the signature in the query."""
    return f"{url.host}{url.path}"


def _jobs_page(response: httpx.Response, path: str) -> JobsPage | ListJobsResponse:
    """A page of jobs: msgspec where that is sure to agree with the wire model, else the model
    (which gives the same values, or the same error; ``pages``)."""
    page = decode_jobs(response.content)
    if page is not None:
        return page
    from batchops.providers.fireworks.wire import ListJobsResponse

    return _parse(ListJobsResponse, response, "GET", path)


def _datasets_page(response: httpx.Response, path: str) -> DatasetsPage | ListDatasetsResponse:
    page = decode_datasets(response.content)
    if page is not None:
        return page
    from batchops.providers.fireworks.wire import ListDatasetsResponse

    return _parse(ListDatasetsResponse, response, "GET", path)


def _parse(model: type[M], response: httpx.Response, method: str, path: str) -> M:
    """Validate a JSON body into a wire model; a malformed answer is an ApiError, not pydantic's."""
    try:
        # pydantic-core parses and validates the bytes in one pass (no dict tree in between).
        return model.model_validate_json(response.content)
    except ValueError as exc:  # pydantic.ValidationError (invalid JSON too) is a ValueError
        # Never the server's bytes (pydantic quotes the input): they could echo the key.
        message = f"malformed response: {_problems(exc)[:300]}"
        raise ApiError(message, method=method, path=path, status=response.status_code) from exc


def _problems(exc: ValueError) -> str:
    """Where and what, without the input values pydantic would quote."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return type(exc).__name__
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors(include_input=False)
    )
