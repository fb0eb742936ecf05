"""``POST /v1/images/generations``: OpenAI's Images API over the same core as the seed endpoint.

The official ``openai`` SDK works against it with ``base_url=".../v1"``: the same catalog,
durable images and history as ``/api/v1/images/generate``, OpenAI's request and response shapes,
and OpenAI's error envelope (``api/errors.py``), so the SDK raises its own typed exceptions.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from imagegen.api.creation import accepted, create
from imagegen.api.deps import AUTHENTICATED, CallerDep, Services, require_json
from imagegen.api.json_route import JsonBodyRoute
from imagegen.api.openai_schemas import (
    ImageData,
    ImageGenerationRequest,
    ImagesResponse,
    OpenAIError,
    ResponseFormat,
)
from imagegen.api.schemas import image_infos
from imagegen.catalog import Route
from imagegen.config import Settings
from imagegen.errors import InvalidRequest, PredictionFailed
from imagegen.models import Generation
from imagegen.storage.base import ImageStore

router = APIRouter(tags=["openai"], dependencies=AUTHENTICATED, route_class=JsonBodyRoute)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OpenAIError, "description": text}
    for status, text in {
        400: "Invalid request (param names the field), or the upstream refused the prompt.",
        401: "A missing, malformed, unknown or revoked API key (code invalid_api_key), or the "
        "upstream provider refused imagegen's key for it.",
        403: "The API key may not use this model.",
        404: "Unknown model (param: model).",
        422: "The model does not make images, or an Idempotency-Key was reused with another body.",
        429: "A limit of the API key (rate_limit_exceeded; insufficient_quota for images per "
        "day), or the upstream throttled the request; see Retry-After.",
        502: "The upstream failed, returned no images, or an image could not be fetched.",
        503: "imagegen is at capacity or misconfigured.",
        504: "The generation did not finish within the request deadline.",
    }.items()
}


@router.post(
    "/v1/images/generations",
    response_model=ImagesResponse,
    response_model_exclude_none=True,
    responses={202: {"description": "Accepted (Prefer: respond-async)."}, **ERRORS},
    dependencies=[Depends(require_json)],
    summary="Create images (OpenAI-compatible)",
)
async def create_images(
    body: ImageGenerationRequest, caller: CallerDep
) -> ImagesResponse | Response:
    services, base_url = caller.services, caller.base_url
    settings = services.settings
    route = services.catalog.resolve(body.requested_model(settings))
    response_format = check_response_format(body, route, settings)
    created = await create(
        services,
        caller.request,
        body.to_domain(settings, route),
        principal=caller.principal,
        scope="openai",
        body=lambda: body.model_dump(exclude_none=True),
        metadata={"openai_options": body.recorded_options()} if body.recorded_options() else None,
    )
    generation = created.generation
    if not created.finished:
        return accepted(generation, base_url, services)
    data = await image_data(generation, response_format, services, base_url)
    return ImagesResponse(
        created=int(generation.created_at.timestamp()), data=data, id=generation.id
    )


def check_response_format(
    body: ImageGenerationRequest, route: Route, settings: Settings
) -> ResponseFormat:
    """The response format to answer in; b64_json needs stored images (400 otherwise)."""
    response_format = body.response_format_for(route)
    if response_format == "b64_json" and settings.return_provider_urls:
        raise InvalidRequest(
            "response_format: b64_json needs stored images, and this imagegen returns the "
            "provider's URLs (IMAGEGEN_RETURN_PROVIDER_URLS)",
            field="response_format",
        )
    return response_format


async def image_data(
    generation: Generation, response_format: ResponseFormat, services: Services, base_url: str
) -> list[ImageData]:
    """The images as URLs imagegen serves, or their stored bytes in base64.

    A generation that succeeded without images never becomes a 200 with an empty ``data``.
    """
    if response_format == "url":
        infos = image_infos(generation, base_url)
        data = [ImageData(url=info.url, revised_prompt=info.revised_prompt) for info in infos]
    else:
        store = services.image_store
        data = [
            ImageData(
                b64_json=await read_b64(store, image.key), revised_prompt=image.revised_prompt
            )
            for image in generation.images
        ]
    if not data:
        raise PredictionFailed("the upstream returned no images", provider=generation.provider)
    return data


async def read_b64(store: ImageStore, key: str) -> str:
    chunks = [chunk async for chunk in store.iter_bytes(key)]
    return base64.b64encode(b"".join(chunks)).decode("ascii")
