"""``POST /v1/images/edits``: OpenAI's image edits (multipart), over the same core as
``/v1/images/generations``: the images and mask are verified and stored, then the job runs on
the model's provider (Replicate maps them onto the model's own inputs; OpenAI-compatible
upstreams get the same multipart edit)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from imagegen.api.creation import accepted, admit_key, create
from imagegen.api.deps import BaseUrlDep, PrincipalDep, ServicesDep
from imagegen.api.edit_form import EditForm, read_edit_form
from imagegen.api.openai_schemas import ImageGenerationRequest, ImagesResponse
from imagegen.api.routes.openai import ERRORS, check_response_format, image_data
from imagegen.config import Settings
from imagegen.models import StoredImage

router = APIRouter(tags=["openai"])

_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["image", "prompt"],
    "additionalProperties": False,
    "properties": {
        "image": {
            "type": "string",
            "format": "binary",
            "description": "The image to edit: PNG, JPEG or WebP (send `image[]` parts for "
            "several).",
        },
        "mask": {
            "type": "string",
            "format": "binary",
            "description": "Where to edit; the size of the (first) image.",
        },
        "prompt": {"type": "string"},
        "model": {"type": "string"},
        "n": {"type": "integer"},
        "size": {"type": "string", "description": '"WxH", or "auto": the image\'s own size.'},
        "response_format": {"type": "string", "enum": ["url", "b64_json"]},
        "output_format": {"type": "string", "enum": ["png", "jpeg", "webp"]},
        "output_compression": {"type": "integer", "minimum": 0, "maximum": 100},
        "partial_images": {"type": "integer", "minimum": 0, "maximum": 3},
        "stream": {"type": "boolean"},
        "seed": {"type": "integer", "description": "Extension: the seed."},
        "negative_prompt": {"type": "string", "description": "Extension."},
        **{
            name: {"type": "string", "description": "Accepted and recorded."}
            for name in (
                "quality",
                "background",
                "moderation",
                "input_fidelity",
                "user",
                "safety_identifier",
            )
        },
    },
}


@router.post(
    "/v1/images/edits",
    response_model=ImagesResponse,
    response_model_exclude_none=True,
    responses={202: {"description": "Accepted (Prefer: respond-async)."}, **ERRORS},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": _FORM_SCHEMA}},
        }
    },
    summary="Edit images (OpenAI-compatible)",
)
async def edit_images(
    request: Request, services: ServicesDep, base_url: BaseUrlDep, principal: PrincipalDep
) -> ImagesResponse | Response:
    settings = services.settings
    form = await read_edit_form(
        request, max_bytes=settings.max_upload_bytes, max_files=settings.max_input_images + 1
    )
    body = form.to_request()
    route = services.catalog.resolve(body.requested_model(settings))
    response_format = check_response_format(body, route, settings)
    # Every field, and the key's limits, checked before any image is stored.
    admitted = await admit_key(
        services, principal, body.to_domain(settings, route), before_storing=True
    )
    images, mask = await services.inputs.prepare(form.images, form.mask)
    if body.size is None or body.size == "auto":
        body = body.model_copy(update={"size": input_size(images[0], settings)})
    generation_request = replace(body.to_domain(settings, route), images=images, mask=mask)
    created = await create(
        services,
        request,
        generation_request,
        scope="openai-edits",
        body=lambda: {**body.model_dump(exclude_none=True), "form_sha256": form.digest},
        metadata=_metadata(body, form),
        principal=principal,
        admitted=admitted,
    )
    generation = created.generation
    if not created.finished:
        return accepted(generation, base_url, services)
    data = await image_data(generation, response_format, services, base_url)
    return ImagesResponse(
        created=int(generation.created_at.timestamp()), data=data, id=generation.id
    )


def input_size(image: StoredImage, settings: Settings) -> str:
    """The first image's own size, scaled (keeping its proportions) into the size bounds."""
    width, height = image.width, image.height
    scale = min(1.0, settings.max_size / max(width, height))
    scale = max(scale, settings.min_size / min(width, height))
    fit = [
        min(settings.max_size, max(settings.min_size, round(side * scale)))
        for side in (width, height)
    ]
    return f"{fit[0]}x{fit[1]}"


def _metadata(body: ImageGenerationRequest, form: EditForm) -> dict[str, Any] | None:
    options = {**body.recorded_options(), **form.options}
    return {"openai_options": options} if options else None
