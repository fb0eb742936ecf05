"""What the catalog serves: ``GET /v1/models[/{id}]`` (OpenAI's shape), ``GET /api/v1/models``.

Both list the catalog's models by public name, and the default model (``IMAGEGEN_DEFAULT_MODEL``)
when it is a Replicate reference served by passthrough; any other ``owner/name[:version]`` is
served too while passthrough is on, but cannot be listed.
"""

from __future__ import annotations

import contextlib

from fastapi import APIRouter
from pydantic import BaseModel, Field

from imagegen.api.deps import AUTHENTICATED, ServicesDep
from imagegen.api.openai_schemas import ModelList, ModelObject, OpenAIError
from imagegen.catalog import Catalog, Route
from imagegen.config import Settings
from imagegen.errors import ImagegenError, InvalidRequest, ModelNotFound

router = APIRouter(tags=["models"], dependencies=AUTHENTICATED)


class CatalogModel(BaseModel):
    id: str = Field(description="The public name to use as `model`.")
    aliases: list[str]
    provider: str
    upstream: str = Field(description="The model's name at the provider.")
    default_width: int | None
    default_height: int | None
    max_images: int | None


class CatalogModels(BaseModel):
    data: list[CatalogModel]
    default_model: str = Field(description="The model of an OpenAI request that names none.")
    replicate_passthrough: bool = Field(
        description="Whether any owner/name[:version] is served by Replicate."
    )


def listed_routes(catalog: Catalog, settings: Settings) -> list[Route]:
    routes = catalog.routes()
    names = set(catalog.names())
    if catalog.passthrough and settings.default_model not in names:
        with contextlib.suppress(ImagegenError):  # logged at start-up; not listed
            routes.append(catalog.resolve(settings.default_model))
    return routes


def model_object(route: Route) -> ModelObject:
    return ModelObject(id=route.public_model, owned_by=route.provider.name)


@router.get("/v1/models", response_model=ModelList, summary="List models (OpenAI-compatible)")
async def list_models(services: ServicesDep) -> ModelList:
    routes = listed_routes(services.catalog, services.settings)
    return ModelList(data=[model_object(route) for route in routes])


@router.get(
    "/v1/models/{model:path}",
    response_model=ModelObject,
    responses={404: {"model": OpenAIError, "description": "No such model (code model_not_found)."}},
    summary="Retrieve a model (OpenAI-compatible)",
)
async def retrieve_model(model: str, services: ServicesDep) -> ModelObject:
    try:
        route = services.catalog.resolve(model)
    except InvalidRequest as exc:  # a malformed name names no model: OpenAI answers 404 for it
        reason = exc.message.removeprefix("model: ")
        message = f"model '{model}' is not served by this imagegen: {reason}"
        raise ModelNotFound(message, model=model) from exc
    return ModelObject(id=model, owned_by=route.provider.name)


@router.get(
    "/api/v1/models",
    response_model=CatalogModels,
    summary="List the catalog's models",
)
async def catalog_models(services: ServicesDep) -> CatalogModels:
    routes = listed_routes(services.catalog, services.settings)
    return CatalogModels(
        data=[
            CatalogModel(
                id=route.public_model,
                aliases=list(route.aliases),
                provider=route.provider.name,
                upstream=route.upstream_model,
                default_width=route.defaults.width,
                default_height=route.defaults.height,
                max_images=route.max_images,
            )
            for route in routes
        ],
        default_model=services.settings.default_model,
        replicate_passthrough=services.catalog.passthrough,
    )
