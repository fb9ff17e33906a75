"""The local backend's HTTP application (Starlette): the Fireworks wire contract for any account,
and the OpenAI Files + Batches API under ``/v1/files`` and ``/v1/batches``, each in its error shape.

``create_app`` is used by ``server`` (uvicorn) and, in process, by tests through an httpx transport.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from batchops.local import routes_datasets, routes_jobs, routes_openai, routes_transfers
from batchops.local.backend import Backend
from batchops.local.config import BackendConfig
from batchops.local.middleware import AuthMiddleware, FaultMiddleware
from batchops.local.openai_errors import (
    OpenAIProblem,
    from_problem,
    is_openai_path,
    openai_response,
)
from batchops.local.problems import ApiProblem, problem_response


def _answer(request: Request, problem: ApiProblem) -> Response:
    """The problem in the error shape of the API the path belongs to."""
    if is_openai_path(request.url.path):
        return from_problem(problem)
    return problem_response(problem)


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    return _answer(request, exc)


async def _openai_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenAIProblem)
    return openai_response(exc)


async def _crash(request: Request, exc: Exception) -> Response:
    return _answer(request, ApiProblem("INTERNAL", f"internal error: {type(exc).__name__}"))


async def _not_found(request: Request, exc: Exception) -> Response:
    return _answer(request, ApiProblem("NOT_FOUND", "resource not found"))


async def _not_allowed(request: Request, exc: Exception) -> Response:
    response = _answer(request, ApiProblem("UNIMPLEMENTED", "Method Not Allowed"))
    response.status_code = 405
    return response


def create_app(config: BackendConfig, *, backend: Backend | None = None) -> Starlette:
    """The app; pass ``backend`` to share one database with a worker (``EmbeddedServer`` does)."""
    backend = backend or Backend(config)
    app = Starlette(
        routes=[
            *routes_jobs.ROUTES,
            *routes_datasets.ROUTES,
            *routes_transfers.ROUTES,
            *routes_openai.ROUTES,
        ],
        middleware=[
            Middleware(FaultMiddleware, faults=config.faults),
            Middleware(AuthMiddleware, api_key=config.api_key),
        ],
        exception_handlers={
            ApiProblem: _problem,
            OpenAIProblem: _openai_problem,
            404: _not_found,
            405: _not_allowed,
            Exception: _crash,
        },
    )
    app.state.backend = backend
    return app
