"""HTTP routes for batchInferenceJobs: create, get, list (paginated), delete. Mounted by ``app``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchops.local import jobs, paging
from batchops.local.httputil import WireJSON, backend_of, json_body

BASE = "/v1/accounts/{account}/batchInferenceJobs"


async def collection(request: Request) -> Response:
    if request.method == "POST":
        return await _create(request)
    return _list(request)


async def _create(request: Request) -> Response:
    body = await json_body(request)
    job_id = request.query_params.get("batchInferenceJobId")
    account = request.path_params["account"]
    return WireJSON(jobs.create(backend_of(request), account, job_id, body))


_LISTING = paging.Listing(
    table="jobs", key="seq", start=0, field="batchInferenceJobs", render=jobs.render
)


def _list(request: Request) -> Response:
    backend, account = backend_of(request), request.path_params["account"]
    return WireJSON(paging.list_page(backend, account, request.query_params, _LISTING))


async def item(request: Request) -> Response:
    backend = backend_of(request)
    account, job_id = request.path_params["account"], request.path_params["job_id"]
    if request.method == "DELETE":
        jobs.delete(backend, account, job_id)
        return WireJSON({})
    return WireJSON(jobs.render(jobs.get_row(backend, account, job_id)))


ROUTES = [
    Route(BASE, collection, methods=["GET", "POST"]),
    Route(BASE + "/{job_id}", item, methods=["GET", "DELETE"]),
]
