"""``create_double_app``: the ASGI app, made of the API, file and control routers."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from tests.fakes.replicate import problems
from tests.fakes.replicate.api import ReplicateApi
from tests.fakes.replicate.config import DoubleConfig
from tests.fakes.replicate.control import control_routes
from tests.fakes.replicate.files import file_routes
from tests.fakes.replicate.playback import FaultMiddleware
from tests.fakes.replicate.state import DoubleState


async def _not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/v1/"):
        return problems.not_found()
    return PlainTextResponse("Not Found", 404)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problems.problem(exc.status_code, {"detail": exc.detail, "status": exc.status_code})


def create_double_app(
    config: DoubleConfig | None = None, *, state: DoubleState | None = None
) -> Starlette:
    """A Replicate double; its ``DoubleState`` is ``app.state.double``."""
    state = state or DoubleState(config)
    routes = [*ReplicateApi(state).routes(), *file_routes(state), *control_routes(state)]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(FaultMiddleware, state=state)],
        exception_handlers={404: _not_found, 405: _http_error},
    )
    app.state.double = state
    return app
