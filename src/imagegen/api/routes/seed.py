"""``POST /api/v1/images/generate``: the seed's endpoint, synchronous, durable URLs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from imagegen.api.creation import create
from imagegen.api.deps import BaseUrlDep, ServicesDep, require_json
from imagegen.api.schemas import ErrorResponse, GenerateRequest, GenerateResponse, image_infos

router = APIRouter(tags=["images"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "Bad Request: the request was invalid or malformed (the message names the field).",
        401: "Unauthenticated: missing or invalid provider token.",
        402: "The provider account has insufficient credit.",
        404: "Unknown model.",
        409: "The generation was canceled.",
        422: "Invalid version or not permitted, invalid input, or a model that makes no images.",
        429: "The provider throttled the request; see Retry-After.",
        502: "The provider failed, answered malformed data, or an image could not be fetched.",
        503: "imagegen is at capacity or misconfigured.",
        504: "The generation did not finish within the request deadline.",
    }.items()
}


@router.post(
    "/api/v1/images/generate",
    response_model=GenerateResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
    summary="Generate images from a prompt",
)
async def generate(
    body: GenerateRequest, request: Request, services: ServicesDep, base_url: BaseUrlDep
) -> GenerateResponse:
    created = await create(
        services,
        request,
        body.to_domain(services.settings),
        scope="seed",
        body=body.model_dump(exclude_none=True),
    )
    generation = created.generation
    images = image_infos(generation, base_url)
    return GenerateResponse(
        image_urls=[image.url for image in images],
        prompt=body.prompt,
        model=body.model,
        id=generation.id,
        images=images,
        images_missing=generation.images_missing,
    )
