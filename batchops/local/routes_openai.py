"""HTTP routes of the OpenAI Files + Batches API (``/v1/files``, ``/v1/batches``) on the local
backend, beside the Fireworks routes on the same app. Mounted by ``app``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from batchops.local import openai_batches, openai_files, openai_pages
from batchops.local.httputil import WireJSON, backend_of
from batchops.local.multipart import boundary_of, save_form
from batchops.local.openai_errors import bad_request
from batchops.wire_openai import (
    BATCH_LIST_LIMIT,
    FILE_LIST_LIMIT,
    MAX_BATCH_FILE_BYTES,
    MAX_FILE_BYTES,
    PURPOSE_BATCH,
    UPLOAD_PURPOSES,
)


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise bad_request(
            "We could not parse the JSON body of your request. The API expects a JSON payload."
        ) from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def _limit(query: Mapping[str, str], bounds: tuple[int, int, int]) -> int:
    low, high, default = bounds
    raw = query.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(
            f"Invalid limit {raw!r}: an integer is expected.", param="limit"
        ) from None
    if not low <= value <= high:
        raise bad_request(f"limit must be between {low} and {high}.", param="limit")
    return value


def _listing(items: Sequence[object], rows: Sequence[Any], more: bool) -> bytes:
    """The list envelope; ``items`` are the rendered ``rows`` (objects, or their JSON)."""
    return orjson.dumps(
        {
            "object": "list",
            "data": items,
            "first_id": rows[0]["id"] if rows else None,
            "last_id": rows[-1]["id"] if rows else None,
            "has_more": more,
        }
    )


def _json(body: bytes) -> Response:
    return Response(body, media_type=WireJSON.media_type)


# --- files -------------------------------------------------------------------------------------


async def files(request: Request) -> Response:
    if request.method == "POST":
        return await _upload(request)
    query, backend = request.query_params, backend_of(request)
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request("order must be 'asc' or 'desc'.", param="order")
    after, limit, purpose = (
        query.get("after") or None,
        _limit(query, FILE_LIST_LIMIT),
        query.get("purpose") or None,
    )

    def build() -> bytes:
        rows, more = openai_files.page(
            backend, after=after, limit=limit, ascending=order == "asc", purpose=purpose
        )
        return _listing(openai_files.render_page(rows), rows, more)

    return _json(openai_pages.page(backend, ("files", after, limit, order, purpose), build))


async def _upload(request: Request) -> Response:
    backend = backend_of(request)
    if int(request.headers.get("content-length") or 0) > MAX_FILE_BYTES + 64 * 1024:
        raise bad_request("The file is over the 512 MB upload limit.", param="file")
    boundary = boundary_of(request.headers.get("content-type", ""))
    file_id = openai_files.new_file_id()
    final = backend.file_path(openai_files.OPENAI_ACCOUNT, file_id, openai_files.INPUT_NAME)
    temp = final.parent / f".upload-{os.getpid()}-{id(request)}"
    temp.parent.mkdir(parents=True, exist_ok=True)
    try:
        with temp.open("wb") as sink:
            filename, size, fields = await save_form(request.stream(), boundary, sink)
        purpose, ttl = _check_upload(filename, size, fields)
        temp.replace(final)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
            temp.parent.rmdir()
        raise
    row = openai_files.add_upload(backend, file_id, purpose, filename, size, ttl)
    return WireJSON(openai_files.render(row))


def _check_upload(filename: str, size: int, fields: dict[str, str]) -> tuple[str, int | None]:
    purpose = fields.get("purpose", "")
    if purpose not in UPLOAD_PURPOSES:
        raise bad_request(
            f"Invalid purpose {purpose!r}: one of {', '.join(UPLOAD_PURPOSES)} is expected.",
            param="purpose",
        )
    if purpose == PURPOSE_BATCH and not filename.endswith(".jsonl"):
        raise bad_request("Invalid file format for Batch API. Must be .jsonl", param="file")
    if purpose == PURPOSE_BATCH and size > MAX_BATCH_FILE_BYTES:
        raise bad_request("A batch input file is limited to 200 MB.", param="file")
    seconds = fields.get("expires_after[seconds]")
    if seconds is None:
        return purpose, None
    if not seconds.isdigit() or not 3600 <= int(seconds) <= 2_592_000:
        raise bad_request(
            "expires_after[seconds] must be between 3600 and 2592000.",
            param="expires_after.seconds",
        )
    return purpose, int(seconds)


async def file_item(request: Request) -> Response:
    backend, file_id = backend_of(request), request.path_params["file_id"]
    if request.method == "DELETE":
        running = openai_batches.running_with_input(backend, file_id)
        openai_files.get_row(backend, file_id)
        openai_files.delete(backend, file_id, in_use_by=running)
        return WireJSON({"id": file_id, "object": "file", "deleted": True})
    return WireJSON(openai_files.render(openai_files.get_row(backend, file_id)))


async def file_content(request: Request) -> Response:
    backend = backend_of(request)
    row = openai_files.get_row(backend, request.path_params["file_id"])
    return FileResponse(openai_files.path_of(backend, row), media_type="application/octet-stream")


# --- batches -----------------------------------------------------------------------------------


async def batches(request: Request) -> Response:
    backend = backend_of(request)
    if request.method == "POST":
        body = await _json_object(request)
        # In a thread: with a token quota, the create counts the input file's tokens once.
        return WireJSON(await run_in_threadpool(openai_batches.create, backend, body))
    after, limit = (
        request.query_params.get("after") or None,
        _limit(request.query_params, BATCH_LIST_LIMIT),
    )

    def build() -> bytes:
        rows, more = openai_batches.page(backend, after=after, limit=limit)
        return _listing(openai_batches.render_page(backend, rows), rows, more)

    return _json(openai_pages.page(backend, ("batches", after, limit), build))


async def batch_item(request: Request) -> Response:
    backend = backend_of(request)
    row = openai_batches.get_row(backend, request.path_params["batch_id"])
    return WireJSON(openai_batches.render(backend, row))


async def batch_cancel(request: Request) -> Response:
    # The SDK sends Content-Type: application/json with an empty body: nothing to parse.
    return WireJSON(openai_batches.cancel(backend_of(request), request.path_params["batch_id"]))


ROUTES = [
    Route("/v1/files", files, methods=["GET", "POST"]),
    Route("/v1/files/{file_id}", file_item, methods=["GET", "DELETE"]),
    Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
    Route("/v1/batches", batches, methods=["GET", "POST"]),
    Route("/v1/batches/{batch_id}", batch_item, methods=["GET"]),
    Route("/v1/batches/{batch_id}/cancel", batch_cancel, methods=["POST"]),
]
