"""``POST /api/v1/images/generate``: the seed's endpoint, durable URLs. Synchronous by default;
``Prefer: respond-async`` answers 202 with the job at once."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from imagegen.api.creation import accepted, create, webhook_target
from imagegen.api.deps import AUTHENTICATED, CallerDep, require_json
from imagegen.api.json_route import JsonBodyRoute
from imagegen.api.schemas import (
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    GenerationInfo,
    generate_response_json,
)

router = APIRouter(tags=["images"], dependencies=AUTHENTICATED, route_class=JsonBodyRoute)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "Bad Request: the request was invalid or malformed (the message names the field).",
        401: "Unauthenticated: a missing, malformed, unknown or revoked API key, or the "
        "provider refused imagegen's token.",
        402: "The provider account has insufficient credit.",
        403: "The API key may not use this model.",
        404: "Unknown model.",
        409: "The generation was canceled.",
        422: "Invalid version or not permitted, invalid input, or a model that makes no images.",
        429: "A limit of the API key (requests per minute, concurrent generations, images per "
        "day), or the provider throttled the request; see Retry-After.",
        502: "The provider failed, answered malformed data, or an image could not be fetched.",
        503: "imagegen's queue is full (see Retry-After), or it is misconfigured.",
        504: "The generation did not finish within the request deadline.",
    }.items()
}
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": GenerationInfo,
        "description": "Prefer: respond-async: the job, with the urls to follow and cancel it.",
    }
}


@router.post(
    "/api/v1/images/generate",
    response_model=GenerateResponse,
    responses={**ACCEPTED, **ERRORS},
    dependencies=[Depends(require_json)],
    summary="Generate images from a prompt",
)
async def generate(body: GenerateRequest, caller: CallerDep) -> bytes | Response:
    services, base_url = caller.services, caller.base_url
    settings = services.settings
    generation_request = body.to_domain(settings)
    webhook = webhook_target(body.webhook, body.webhook_events_filter, settings)
    sources, mask = body.input_sources()
    if sources or mask is not None:  # checked, then stored: only once the rest is valid
        stored, stored_mask = await services.inputs.prepare(sources, mask)
        generation_request = replace(generation_request, images=stored, mask=stored_mask)
    created = await create(
        services,
        caller.request,
        generation_request,
        principal=caller.principal,
        scope="seed",
        body=lambda: body.model_dump(exclude_none=True),
        webhook=webhook,
    )
    generation = created.generation
    if not created.finished:
        return accepted(generation, base_url, services)
    return generate_response_json(generation, base_url, body.prompt, body.model)
