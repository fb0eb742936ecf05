"""Wire models of the seed API (``/api/v1``). Strict: no coercion of strings, booleans or
fractions; a whole number written as a float (``2.0``) is the integer JSON Schema says it is."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr
from pydantic_core import to_json

from imagegen.api.wire import WireModel
from imagegen.config import Settings
from imagegen.errors import InvalidRequest
from imagegen.inputs import InputSource
from imagegen.jobs.records import WebhookAttempt
from imagegen.models import Generation, GenerationRequest, JobStatus

OutputFormat = Literal["png", "jpg", "jpeg", "webp"]


def whole_number(value: object) -> object:
    """``2.0`` -> ``2``: JSON Schema's ``integer`` admits it; ``2.5``, ``"2"`` and ``true`` stay
    refused by the strict check that follows."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeInt = Annotated[StrictInt, BeforeValidator(whole_number)]
"""An integer on the wire: a JSON integer, or a float with no fractional part. Bounds go before
the validator, ``Annotated[StrictInt, Field(ge=0), BeforeValidator(whole_number)]``, or the
schema shows them as ``ge``/``le`` instead of ``minimum``/``maximum``."""
WebhookEventName = Literal["start", "completed"]


class GenerateRequest(WireModel):
    """``POST /api/v1/images/generate``: the seed's five fields, plus optional extensions."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: StrictStr = Field(description="owner/name or owner/name:version, or a catalog name.")
    prompt: StrictStr = Field(description="What to draw.")
    num_images: WholeInt = Field(description="How many images (default bounds 1-10).")
    width: WholeInt = Field(description="Width in pixels (default bounds 64-4096).")
    height: WholeInt = Field(description="Height in pixels (default bounds 64-4096).")
    seed: WholeInt | None = Field(default=None, description="Seed, for models that take one.")
    negative_prompt: StrictStr | None = Field(default=None, description="What not to draw.")
    output_format: OutputFormat | None = Field(default=None, description="Image format.")
    webhook: StrictStr | None = Field(
        default=None,
        description="An http(s) URL that receives the job (signed, Standard Webhooks) on the "
        "events in webhook_events_filter.",
    )
    webhook_events_filter: list[WebhookEventName] | None = Field(
        default=None,
        description='Which events to send: "start" (running), "completed" (any final state). '
        'Default ["completed"].',
    )
    image: StrictStr | None = Field(
        default=None,
        description="An input image (edits, image-to-image): a data: URL, or an https URL "
        "imagegen downloads (public hosts only; PNG, JPEG or WebP).",
    )
    mask: StrictStr | None = Field(
        default=None,
        description="Where to repaint (inpainting), as image, of the image's size: its "
        "transparent areas (OpenAI's way) or, in a mask without transparency, its white areas "
        "(Replicate's way); imagegen translates it for the upstream.",
    )

    def input_sources(self) -> tuple[list[InputSource], InputSource | None]:
        """The request's input images and mask, to read and store (``imagegen.inputs``)."""
        images = [] if self.image is None else [InputSource("image", text=self.image)]
        mask = None if self.mask is None else InputSource("mask", text=self.mask)
        return images, mask

    def to_domain(self, settings: Settings) -> GenerationRequest:
        """Check the configurable bounds and build the core request; errors name the field."""
        prompt = self.prompt.strip()
        if not prompt:
            raise InvalidRequest("prompt: must not be empty", field="prompt")
        if len(self.prompt) > settings.max_prompt_length:
            raise InvalidRequest(
                f"prompt: must be at most {settings.max_prompt_length} characters", field="prompt"
            )
        if not self.model.strip():
            raise InvalidRequest("model: must not be empty", field="model")
        _check_range("num_images", self.num_images, settings.min_images, settings.max_images)
        _check_range("width", self.width, settings.min_size, settings.max_size)
        _check_range("height", self.height, settings.min_size, settings.max_size)
        if self.seed is not None and not 0 <= self.seed <= 2**32 - 1:
            raise InvalidRequest("seed: must be between 0 and 4294967295", field="seed")
        if (
            self.negative_prompt is not None
            and len(self.negative_prompt) > settings.max_prompt_length
        ):
            raise InvalidRequest(
                f"negative_prompt: must be at most {settings.max_prompt_length} characters",
                field="negative_prompt",
            )
        output_format = "jpg" if self.output_format == "jpeg" else self.output_format
        return GenerationRequest(
            model=self.model.strip(),
            prompt=self.prompt,
            num_images=self.num_images,
            width=self.width,
            height=self.height,
            seed=self.seed,
            negative_prompt=self.negative_prompt,
            output_format=output_format,
        )


def _check_range(field: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidRequest(f"{field}: must be an integer from {low} to {high}", field=field)


class ImageInfo(BaseModel):
    url: str
    width: int | None = None
    height: int | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    revised_prompt: str | None = Field(
        default=None, description="The prompt the upstream drew, when it rewrote the user's."
    )


class GenerateResponse(BaseModel):
    """The seed's response (``image_urls``, ``prompt``, ``model``) plus additive fields."""

    image_urls: list[str]
    prompt: str
    model: str
    id: str = Field(description="The stored generation's id (GET /api/v1/generations/{id}).")
    images: list[ImageInfo] = Field(description="Each image with its real size and type.")
    images_missing: int = Field(
        description="Images asked for but not returned (e.g. dropped by a safety filter)."
    )


class InputImageInfo(BaseModel):
    """An input image of the generation, stored as outputs are."""

    role: Literal["image", "mask"]
    url: str
    width: int
    height: int
    content_type: str
    size_bytes: int
    source_url: str | None = Field(
        default=None, description="Where imagegen downloaded it from (URL inputs only)."
    )


class ErrorResponse(BaseModel):
    error: str


class PredictionInfo(BaseModel):
    id: str
    inputs: dict[str, object]
    images_requested: int


class GenerationUrls(BaseModel):
    get: str
    cancel: str
    events: str


class WebhookAttemptInfo(BaseModel):
    webhook_id: str = Field(description="The message's webhook-id (the same on every retry).")
    event: WebhookEventName
    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's status; null if none came.")
    error: str | None
    delivered: bool


class GenerationInfo(BaseModel):
    """A stored generation, as ``GET /api/v1/generations/{id}`` returns it."""

    id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    model: str
    prompt: str
    num_images: int
    width: int
    height: int
    provider: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    image_urls: list[str]
    images: list[ImageInfo]
    images_missing: int
    predictions: list[PredictionInfo]
    error: str | None
    error_code: str | None
    progress: float | None = Field(
        default=None, description="0..1 while running, when the provider reports it; 1 when done."
    )
    urls: GenerationUrls
    webhook: str | None = None
    webhook_events_filter: list[str] = Field(default_factory=list)
    webhook_attempts: list[WebhookAttemptInfo] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="What imagegen recorded about the request (endpoint, OpenAI options).",
    )
    inputs: list[InputImageInfo] = Field(
        default_factory=list,
        description="The input images (edits, image-to-image), the mask last.",
    )
    cost: float | None = Field(
        default=None,
        description="What it cost upstream in USD, from the catalog's prices; null when unknown.",
    )
    predict_seconds: float | None = Field(
        default=None, description="Seconds the upstream billed (Replicate's predict_time)."
    )


class GenerationPage(BaseModel):
    data: list[GenerationInfo]
    next_cursor: str | None


def image_infos(generation: Generation, base_url: str) -> list[ImageInfo]:
    """The URLs a client should use: imagegen's own, or the provider's when nothing was stored."""
    if generation.images:
        return [
            ImageInfo(
                url=f"{base_url}/images/{image.key}",
                width=image.width,
                height=image.height,
                content_type=image.content_type,
                size_bytes=image.size_bytes,
                revised_prompt=image.revised_prompt,
            )
            for image in generation.images
        ]
    return [ImageInfo(url=url) for url in generation.provider_urls]


def generate_response_json(generation: Generation, base_url: str, prompt: str, model: str) -> bytes:
    """``GenerateResponse`` for ``generation`` as its JSON, byte for byte, built without the
    models (``tests/api/test_reply_json.py`` holds it to theirs)."""
    if generation.images:
        images = [
            {
                "url": f"{base_url}/images/{image.key}",
                "width": image.width,
                "height": image.height,
                "content_type": image.content_type,
                "size_bytes": image.size_bytes,
                "revised_prompt": image.revised_prompt,
            }
            for image in generation.images
        ]
    else:
        images = [_provider_image(url) for url in generation.provider_urls]
    return to_json(
        {
            "image_urls": [image["url"] for image in images],
            "prompt": prompt,
            "model": model,
            "id": generation.id,
            "images": images,
            "images_missing": generation.images_missing,
        }
    )


def _provider_image(url: str) -> dict[str, Any]:
    return {
        "url": url,
        "width": None,
        "height": None,
        "content_type": None,
        "size_bytes": None,
        "revised_prompt": None,
    }


def input_infos(generation: Generation, base_url: str) -> list[InputImageInfo]:
    request = generation.request
    roles = [("image", image) for image in request.images]
    if request.mask is not None:
        roles.append(("mask", request.mask))
    return [
        InputImageInfo(
            role=role,
            url=f"{base_url}/images/{image.key}",
            width=image.width,
            height=image.height,
            content_type=image.content_type,
            size_bytes=image.size_bytes,
            source_url=image.source_url,
        )
        for role, image in roles
    ]


def generation_urls(generation_id: str, base_url: str) -> GenerationUrls:
    get = f"{base_url}/api/v1/generations/{generation_id}"
    return GenerationUrls(get=get, cancel=f"{get}/cancel", events=f"{get}/events")


def generation_info(
    generation: Generation,
    base_url: str,
    *,
    progress: float | None = None,
    attempts: Sequence[WebhookAttempt] = (),
) -> GenerationInfo:
    images = image_infos(generation, base_url)
    request = generation.request
    if generation.status is JobStatus.SUCCEEDED:
        progress = 1.0
    return GenerationInfo(
        id=generation.id,
        status=generation.status.value,
        model=request.model,
        prompt=request.prompt,
        num_images=request.num_images,
        width=request.width,
        height=request.height,
        provider=generation.provider,
        created_at=generation.created_at,
        started_at=generation.started_at,
        completed_at=generation.completed_at,
        image_urls=[image.url for image in images],
        images=images,
        images_missing=generation.images_missing,
        predictions=[
            PredictionInfo(
                id=p.prediction_id, inputs=dict(p.inputs), images_requested=p.images_requested
            )
            for p in generation.predictions
        ],
        error=generation.error,
        error_code=generation.error_code,
        metadata=dict(generation.metadata),
        inputs=input_infos(generation, base_url),
        cost=generation.cost,
        predict_seconds=generation.predict_seconds,
        progress=progress,
        urls=generation_urls(generation.id, base_url),
        webhook=generation.webhook_url,
        webhook_events_filter=list(generation.webhook_events),
        webhook_attempts=[
            WebhookAttemptInfo(
                webhook_id=attempt.delivery_id,
                event=attempt.event.value,
                attempted_at=attempt.attempted_at,
                status_code=attempt.status_code,
                error=attempt.error,
                delivered=attempt.delivered,
            )
            for attempt in attempts
        ],
    )


def webhook_renderer(base_url: str) -> Callable[[Generation], str]:
    """Webhook bodies: the job as ``GET /api/v1/generations/{id}`` shows it, links included."""

    def render(generation: Generation) -> str:
        return generation_info(generation, base_url).model_dump_json()

    return render
