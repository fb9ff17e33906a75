"""HTTP routes for datasets, including the colon verbs (``{id}:upload``, ``:getUploadEndpoint``,
``:validateUpload``, ``:getDownloadEndpoint``), which share one path template and are split here.
Mounted by ``app``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchops.local import datasets, outputs, paging
from batchops.local.backend import Backend
from batchops.local.httputil import WireJSON, backend_of, base_url, has_body, json_body
from batchops.local.multipart import boundary_of, save_file_part
from batchops.local.problems import ApiProblem, invalid, not_found
from batchops.local.signing import DOWNLOAD_TTL, UPLOAD_TTL, sign, transfer_path
from batchops.local.timeutil import valid_id
from batchops.providers.fireworks.wire import (
    DATASET_STATE_READY,
    DATASET_STATE_UPLOADING,
    DIRECT_UPLOAD_LIMIT,
    Dataset,
    UploadResponse,
    dataset_resource,
)

BASE = "/v1/accounts/{account}/datasets"
READ_ONLY = ("name", "create_time", "update_time", "created_by", "state", "status")
Handler = Callable[[Request, str, str], Awaitable[Response]]


async def collection(request: Request) -> Response:
    if request.method == "POST":
        return await _create(request)
    return _list(request)


async def _create(request: Request) -> Response:
    body = await json_body(request)
    dataset_id = body.get("datasetId") or body.get("dataset_id")
    if not isinstance(dataset_id, str) or not valid_id(dataset_id):
        raise invalid(
            f"invalid dataset ID {dataset_id!r}: must match [a-z0-9]([-a-z0-9]{{0,61}}[a-z0-9])?"
        )
    _refuse_derived(body)
    doc = _writable(body.get("dataset"))
    if "userUploaded" in doc and "exampleCount" not in doc:
        raise invalid("example_count is required for uploaded datasets")
    backend, account = backend_of(request), request.path_params["account"]
    datasets.insert(backend, account, dataset_id, doc, DATASET_STATE_UPLOADING)
    return WireJSON(datasets.render(datasets.get_row(backend, account, dataset_id)))


def _refuse_derived(body: dict[str, Any]) -> None:
    """Creating a dataset from another one (a filtered copy) is a real-service feature this
    backend does not carry out: refused, rather than answered 200 with an empty dataset."""
    for key in ("sourceDatasetId", "source_dataset_id", "filter"):
        if body.get(key):
            raise ApiProblem(
                "UNIMPLEMENTED",
                f"{key} is not supported by the local backend: create the dataset and upload "
                "its rows instead",
            )


def _writable(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise invalid("dataset is required")
    try:
        full = Dataset.model_validate(raw)
    except ValueError as exc:
        raise invalid(f"invalid dataset: {exc}") from None
    known = {name: getattr(full, name) for name in Dataset.model_fields if name not in READ_ONLY}
    return Dataset(**known).to_wire()


_LISTING = paging.Listing(
    table="datasets", key="id", start="", field="datasets", render=datasets.render
)


def _list(request: Request) -> Response:
    backend, account = backend_of(request), request.path_params["account"]
    return WireJSON(paging.list_page(backend, account, request.query_params, _LISTING))


async def item(request: Request) -> Response:
    """``{id}`` or ``{id}:{verb}``: Starlette does not split on ':' so we do."""
    account = request.path_params["account"]
    dataset_id, _, verb = request.path_params["rest"].partition(":")
    handler = _VERBS.get((request.method, verb))
    if handler is None:
        if any(v == verb for _, v in _VERBS):
            raise HTTPException(405)  # answered by the app's 405 handler, like any route
        raise not_found(f"dataset {dataset_resource(account, dataset_id)}")
    return await handler(request, account, dataset_id)


async def _get(request: Request, account: str, dataset_id: str) -> Response:
    row = datasets.get_row(backend_of(request), account, dataset_id)
    return WireJSON(datasets.render(row))


async def _patch(request: Request, account: str, dataset_id: str) -> Response:
    fields = _updates(await json_body(request))
    backend = backend_of(request)
    datasets.update(backend, account, dataset_id, fields=fields)
    return WireJSON(datasets.render(datasets.get_row(backend, account, dataset_id)))


# PATCH carries out these fields (either spelling) and refuses every other writable one, so no
# update is answered 200 and silently dropped. Output-only fields are ignored, as by the service.
_UPDATABLE = {
    "displayName": "displayName",
    "display_name": "displayName",
    "format": "format",
    "exampleCount": "exampleCount",
    "example_count": "exampleCount",
}
_OUTPUT_ONLY = frozenset(
    {
        "name",
        "createTime",
        "create_time",
        "updateTime",
        "update_time",
        "createdBy",
        "created_by",
        "state",
        "status",
        "estimatedTokenCount",
        "estimated_token_count",
        "encryptionState",
        "encryption_state",
        "averageTurnCount",
        "average_turn_count",
    }
)
_FORMATS = ("FORMAT_UNSPECIFIED", "CHAT", "COMPLETION", "RL")


def _updates(body: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key in _OUTPUT_ONLY:
            continue
        if key not in _UPDATABLE:
            raise invalid(f"field {key!r} cannot be updated on the local backend")
        fields[_UPDATABLE[key]] = _checked(_UPDATABLE[key], value)
    return fields


def _checked(field: str, value: Any) -> Any:
    if field == "displayName" and isinstance(value, str):
        return value
    if field == "format" and value in _FORMATS:
        return value
    if field == "exampleCount" and _is_count(value):
        return str(int(value))
    raise invalid(f"invalid value for {field}: {value!r}")


def _is_count(value: Any) -> bool:
    """int64 as a JSON string (or a number), never negative."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.isdigit()


async def _delete(request: Request, account: str, dataset_id: str) -> Response:
    datasets.delete(backend_of(request), account, dataset_id)
    return WireJSON({})


async def _upload(request: Request, account: str, dataset_id: str) -> Response:
    backend = backend_of(request)
    datasets.get_row(backend, account, dataset_id)
    if int(request.headers.get("content-length") or 0) > DIRECT_UPLOAD_LIMIT + 64 * 1024:
        raise invalid("files over 150 MB must be uploaded through getUploadEndpoint")
    boundary = boundary_of(request.headers.get("content-type", ""))
    temp = backend.dataset_dir(account, dataset_id) / f".upload-{os.getpid()}-{id(request)}"
    temp.parent.mkdir(parents=True, exist_ok=True)
    try:
        with temp.open("wb") as sink:
            filename, size = await save_file_part(request.stream(), boundary, sink)
        filename = _basename(filename)
        temp.replace(backend.file_path(account, dataset_id, filename))
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    datasets.record_upload(backend, account, dataset_id, filename, size, registered=None)
    datasets.update(backend, account, dataset_id, state=DATASET_STATE_READY)
    answer = UploadResponse(
        id=dataset_resource(account, dataset_id),
        bytes=size,
        created_at=int(time.time()),
        filename=filename,
    )
    return WireJSON(answer.model_dump())


def _basename(filename: str) -> str:
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if not name or name in (".", "..") or name.startswith(".upload-"):
        raise invalid(f"invalid file name {filename!r}")
    return name


async def _upload_endpoint(request: Request, account: str, dataset_id: str) -> Response:
    backend = backend_of(request)
    datasets.get_row(backend, account, dataset_id)
    sizes = _sizes((await json_body(request)).get("filenameToSize"))
    datasets.register_files(backend, account, dataset_id, sizes)
    urls = {
        name: sign(
            backend.key,
            base_url(request),
            "PUT",
            transfer_path(account, dataset_id, name),
            ttl=UPLOAD_TTL,
            size=size,
        )
        for name, size in sizes.items()
    }
    return WireJSON({"filenameToSignedUrls": urls})


def _sizes(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict) or not raw:
        raise invalid("filename_to_size is required")
    sizes: dict[str, int] = {}
    for name, size in raw.items():
        if _basename(name) != name:
            raise invalid(f"invalid file name {name!r}: base names only")
        try:
            sizes[name] = int(size)
        except (TypeError, ValueError):
            raise invalid(f"invalid size {size!r} for {name}") from None
    return sizes


async def _validate(request: Request, account: str, dataset_id: str) -> Response:
    await json_body(request)
    datasets.validate_upload(backend_of(request), account, dataset_id)
    return WireJSON({})


async def _download_endpoint(request: Request, account: str, dataset_id: str) -> Response:
    if has_body(request):
        raise invalid("getDownloadEndpoint is a GET without a body")
    backend = backend_of(request)
    lineage = request.query_params.get("downloadLineage", "").lower() in ("true", "1")
    urls: dict[str, str] = {}
    for member in _members(backend, account, dataset_id, lineage=lineage):
        for row in datasets.files(backend, account, member):
            if row["uploaded_size"] is not None:
                path = transfer_path(account, member, row["filename"])
                url = sign(backend.key, base_url(request), "GET", path, ttl=DOWNLOAD_TTL)
                urls[f"dataset/{member}/{row['filename']}"] = url
    return WireJSON({"filenameToSignedUrls": urls})


def _members(backend: Backend, account: str, dataset_id: str, *, lineage: bool) -> list[str]:
    """The dataset, plus with lineage the output datasets of every job in its continuation chain."""
    row = datasets.get_row(backend, account, dataset_id)
    source = orjson.loads(row["doc"]).get("sourceJobName", "")  # one field: no full render
    if not lineage or not source:
        return [dataset_id]
    members = [outputs.output_id(link) for link in outputs.chain(backend, account, source)]
    existing = [m for m in members if m != dataset_id and datasets.exists(backend, account, m)]
    return [dataset_id, *existing]


_VERBS: dict[tuple[str, str], Handler] = {
    ("GET", ""): _get,
    ("PATCH", ""): _patch,
    ("DELETE", ""): _delete,
    ("POST", "upload"): _upload,
    ("POST", "getUploadEndpoint"): _upload_endpoint,
    ("POST", "validateUpload"): _validate,
    ("GET", "getDownloadEndpoint"): _download_endpoint,
}

ROUTES = [
    Route(BASE, collection, methods=["GET", "POST"]),
    Route(BASE + "/{rest}", item, methods=["GET", "POST", "PATCH", "DELETE"]),
]
