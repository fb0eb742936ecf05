"""The app factory: ``create_app(settings)`` wires routers, error handlers and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import Depends, FastAPI

from imagegen import __version__
from imagegen.api import errors, openapi
from imagegen.api.deps import Services, storable_parameters
from imagegen.api.limits import BodyLimitMiddleware
from imagegen.api.middleware import RequestIdMiddleware, RequestLogMiddleware
from imagegen.api.routes import generations, health, images, models, openai, seed
from imagegen.config import Settings

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
        dependencies=[Depends(storable_parameters)],
    )
    errors.install(app)
    openapi.install(app, settings)
    # The last added runs first: an id, then the log line, then the body limit (its 413s logged).
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, pause=settings.body_timeout
    )
    app.add_middleware(RequestLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
    routers = (seed.router, openai.router, models.router, generations.router, images.router)
    for router in (*routers, health.router):
        app.include_router(router)
    return app
