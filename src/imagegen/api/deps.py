"""Dependencies shared by the routers: the service container, base URL, body checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from imagegen.catalog import Catalog
from imagegen.config import Settings
from imagegen.errors import InvalidRequest
from imagegen.jobs.protocols import GenerationStore
from imagegen.jobs.runner import JobRunner
from imagegen.shared.client import SharedRedis
from imagegen.storage.base import ImageStore


@dataclass(slots=True)
class Services:
    """Everything the routes use, built once per app in the lifespan (``imagegen.services``)."""

    settings: Settings
    runner: JobRunner
    catalog: Catalog
    store: GenerationStore
    image_store: ImageStore
    redis: SharedRedis | None = None  # the shared state, when IMAGEGEN_REDIS_URL is set


# The dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its
# thread pool on every request, which costs more than the work they do.


async def get_services(request: Request) -> Services:
    return _services(request)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_base_url(request: Request) -> str:
    """Where clients reach imagegen: the configured public URL, else the request's own."""
    services = _services(request)
    if services.settings.public_base_url:
        return services.settings.public_base_url
    return str(request.base_url).rstrip("/")


async def require_json(request: Request) -> None:
    """Create endpoints take JSON only; anything else is a 400 naming the header."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise InvalidRequest("Content-Type: must be application/json", field="Content-Type")


ServicesDep = Annotated[Services, Depends(get_services)]
BaseUrlDep = Annotated[str, Depends(get_base_url)]
