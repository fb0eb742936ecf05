"""Wire models of the OpenAI-compatible API (``/v1``), and the mapping onto the core request.

Field names, types and values follow OpenAI's Images API as the official SDK sends them; ``seed``
and ``negative_prompt`` are extensions (the SDK's ``extra_body``). Validation is as strict as the
seed endpoint's: a string for a number, an unknown field or an out-of-range value is a 400 whose
``param`` names the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from imagegen.api.schemas import GenerateRequest, WholeInt, whole_number
from imagegen.api.wire import WireModel
from imagegen.catalog import Route
from imagegen.config import Settings
from imagegen.errors import InvalidRequest
from imagegen.models import GenerationRequest

ResponseFormat = Literal["url", "b64_json"]
_SIZE = re.compile(r"^([0-9]{1,6})x([0-9]{1,6})$")
_WHOLE = BeforeValidator(whole_number)


class ImageGenerationRequest(WireModel):
    """``POST /v1/images/generations``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: StrictStr = Field(description="What to draw.")
    model: StrictStr | None = Field(
        default=None, description="A catalog name or owner/name[:version]; default: the server's."
    )
    n: WholeInt | None = Field(default=None, description="How many images (default 1).")
    size: StrictStr | None = Field(
        default=None, description='"WxH" in pixels, or "auto" (the model\'s default size).'
    )
    response_format: ResponseFormat | None = Field(
        default=None, description="url (imagegen's durable URL, the default) or b64_json."
    )
    output_format: Literal["png", "jpeg", "webp"] | None = None
    quality: StrictStr | None = Field(default=None, description="Accepted and recorded.")
    style: StrictStr | None = Field(default=None, description="Accepted and recorded.")
    background: StrictStr | None = Field(default=None, description="Accepted and recorded.")
    moderation: StrictStr | None = Field(default=None, description="Accepted and recorded.")
    output_compression: Annotated[StrictInt, Field(ge=0, le=100), _WHOLE] | None = None
    user: StrictStr | None = Field(default=None, description="Accepted and recorded.")
    safety_identifier: StrictStr | None = Field(default=None, description="Accepted, recorded.")
    stream: StrictBool | None = Field(default=None, description="Only false is supported.")
    partial_images: Annotated[StrictInt, Field(ge=0, le=3), _WHOLE] | None = None
    seed: WholeInt | None = Field(default=None, description="Extension: the seed.")
    negative_prompt: StrictStr | None = Field(default=None, description="Extension.")

    def recorded_options(self) -> dict[str, Any]:
        """OpenAI options imagegen records on the job without acting on them."""
        names = ("quality", "style", "background", "moderation", "output_compression", "user")
        values = {name: getattr(self, name) for name in (*names, "safety_identifier")}
        return {name: value for name, value in values.items() if value is not None}

    def requested_model(self, settings: Settings) -> str:
        """The model asked for, or the server's default (``IMAGEGEN_DEFAULT_MODEL``)."""
        return settings.default_model if self.model is None else self.model.strip()

    def to_domain(self, settings: Settings, route: Route) -> GenerationRequest:
        """The core request for ``route`` (the catalog's answer for the model). Errors name the
        OpenAI field (``n``, ``size``); the rest is checked as the seed endpoint checks it."""
        if self.stream:
            raise InvalidRequest("stream: streaming is not supported", field="stream")
        n = 1 if self.n is None else self.n
        if not settings.min_images <= n <= settings.max_images:
            limits = f"{settings.min_images} to {settings.max_images}"
            raise InvalidRequest(f"n: must be an integer from {limits}", field="n")
        route.check_images(n, field="n")
        width, height = self._size(settings, route)
        # Its values are this body's, validated and checked already: not validated again.
        return GenerateRequest.model_construct(
            model=self.requested_model(settings),
            prompt=self.prompt,
            num_images=n,
            width=width,
            height=height,
            seed=self.seed,
            negative_prompt=self.negative_prompt,
            output_format=self.output_format,
        ).to_domain(settings)

    def _size(self, settings: Settings, route: Route) -> tuple[int, int]:
        if self.size is None or self.size == "auto":
            width, height = route.defaults.size or (settings.default_width, settings.default_height)
            return _clamp(width, settings), _clamp(height, settings)
        match = _SIZE.match(self.size)
        low, high = settings.min_size, settings.max_size
        if match is None:
            raise InvalidRequest("size: must be 'auto' or 'WxH', e.g. '1024x1024'", field="size")
        width, height = int(match[1]), int(match[2])
        if not (low <= width <= high and low <= height <= high):
            raise InvalidRequest(
                f"size: width and height must each be from {low} to {high}", field="size"
            )
        return width, height

    def response_format_for(self, route: Route) -> ResponseFormat:
        """What the client asked for, else the model's default, else ``url``."""
        if self.response_format is not None:
            return self.response_format
        return "b64_json" if route.defaults.response_format == "b64_json" else "url"


def _clamp(side: int, settings: Settings) -> int:
    return min(settings.max_size, max(settings.min_size, side))


class ImageData(BaseModel):
    """One image: ``url`` or ``b64_json``, and ``revised_prompt`` when the upstream gave one."""

    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    """OpenAI's ``ImagesResponse``, plus the generation's ``id`` (an additive field)."""

    created: int = Field(description="When the generation was created (Unix seconds).")
    data: list[ImageData]
    id: str = Field(description="The stored generation (GET /api/v1/generations/{id}).")


class ModelObject(BaseModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """OpenAI's error envelope, used by every route under ``/v1``."""

    error: OpenAIErrorDetail
