"""The app factory: ``create_app(settings)`` wires routers, error handlers and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import Depends, FastAPI

from imagegen import __version__
from imagegen.api import docs, errors, openapi
from imagegen.api.deps import Services, storable_parameters
from imagegen.api.edge import EdgeMiddleware
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
from imagegen.api.telemetry import native_telemetry
from imagegen.config import Settings
from imagegen.web import routes as web

ServicesFactory = Callable[[Settings], AbstractAsyncContextManager[Services]]


def create_app(
    settings: Settings,
    *,
    services: ServicesFactory | None = None,
    started: Callable[[], object] | None = None,
) -> FastAPI:
    """Build the ASGI app. ``services`` replaces the default composition root (tests use it);
    ``started`` runs once the services are up, before the first request (``imagegen serve``
    freezes start-up's objects out of the garbage collector's sight: ``imagegen.collector``)."""
    if services is None:
        from imagegen.services import build_services

        services = build_services

    factory = services

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with factory(settings) as built:
            app.state.services = built
            app.state.image_store = built.image_store
            if started is not None:
                started()
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
        telemetry=native_telemetry(),  # decided once, not looked up per request
    )
    # Health first: FastAPI builds each route's request handling when a request is first
    # matched against it, so a probe matched before the API's routes does not build them all
    # (some 30 ms of the first /healthz); each API route is built on its own first request.
    routers = (
        health.router,
        seed.router,
        openai.router,
        edits.router,
        models.router,
        generations.router,
        images.router,
        keys.router,
        usage_routes.router,
        metrics.router,
        web.router,
    )
    errors.install(app)
    openapi.install(app, settings, routers)
    docs.install(app)
    # One layer: the request id, timing, metrics and the log line, the body limit (its 413s
    # observed and logged).
    app.add_middleware(
        EdgeMiddleware, max_bytes=settings.max_body_bytes, pause=settings.body_timeout
    )
    for router in routers:
        app.include_router(router)
    return app
