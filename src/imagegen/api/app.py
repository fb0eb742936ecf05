"""The app factory: ``create_app(settings)`` wires routers, error handlers and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import Depends, FastAPI

from imagegen import __version__
from imagegen.api import docs, errors, openapi
from imagegen.api.deps import Services, storable_parameters
from imagegen.api.limits import BodyLimitMiddleware
from imagegen.api.middleware import RequestIdMiddleware
from imagegen.api.observe import ObserveMiddleware
from imagegen.api.routes import (
    edits,
    generations,
    health,
    images,
    keys,
    metrics,
    models,
    openai,
    seed,
)
from imagegen.api.routes import usage as usage_routes
from imagegen.config import Settings
from imagegen.web import routes as web

ServicesFactory = Callable[[Settings], AbstractAsyncContextManager[Services]]


def create_app(settings: Settings, *, services: ServicesFactory | None = None) -> FastAPI:
    """Build the ASGI app. ``services`` replaces the default composition root (tests use it)."""
    if services is None:
        from imagegen.services import build_services

        services = build_services

    factory = services

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with factory(settings) as built:
            app.state.services = built
            app.state.image_store = built.image_store
            yield

    app = FastAPI(
        title="imagegen",
        version=__version__,
        description="A self-hostable image-generation API: one stable endpoint for "
        "text-to-image across providers, with images that do not expire.",
        lifespan=lifespan,
        docs_url=None,  # served by api/docs.py, with no CDN
        redoc_url=None,
        dependencies=[Depends(storable_parameters)],
    )
    errors.install(app)
    openapi.install(app, settings)
    docs.install(app)
    # The last added runs first: an id, then timing, metrics and the log line, then the body
    # limit (its 413s observed and logged).
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, pause=settings.body_timeout
    )
    app.add_middleware(ObserveMiddleware)
    app.add_middleware(RequestIdMiddleware)  # outermost: the request id is known to the rest
    routers = (
        seed.router,
        openai.router,
        edits.router,
        models.router,
        generations.router,
        images.router,
    )
    extra = (keys.router, usage_routes.router, metrics.router)
    # Health first: FastAPI builds each route's request handling when a request is first
    # matched against it, so a probe matched before the API's routes does not build them all
    # (some 30 ms of the first /healthz); each API route is built on its own first request.
    for router in (health.router, *routers, *extra, web.router):
        app.include_router(router)
    return app
