"""What each model served by the OpenAI double accepts, and request validation against it.

The rules (sizes, ``n``, which parameters exist) and the error envelopes follow the real OpenAI
Images API as seen through ``openai-python``: dall-e models use the older ``"'x' is not one of
[...] - 'param'"`` wording with ``code: null``; GPT image models use ``invalid_value`` /
``unknown_parameter`` codes. The free-size model stands for a Together/LocalAI-style server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OPENAI_PARAMS = frozenset(
    {
        "prompt",
        "model",
        "n",
        "size",
        "quality",
        "style",
        "response_format",
        "output_format",
        "output_compression",
        "background",
        "moderation",
        "user",
        "stream",
        "partial_images",
    }
)
_GPT_ONLY = frozenset(
    {"output_format", "output_compression", "background", "moderation", "partial_images"}
)
FREE_MIN, FREE_MAX, FREE_STEP = 256, 2048, 64


class ApiError(Exception):
    """An OpenAI-style error reply: ``{"error": {message, type, param, code}}`` with a status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model's rules. ``sizes=None`` means any WxH multiple of 64 within 256..2048."""

    id: str
    sizes: tuple[str, ...] | None
    max_n: int = 10
    max_prompt: int = 32000
    response_formats: tuple[str, ...] = ("url", "b64_json")
    qualities: tuple[str, ...] = ("standard",)
    styles: tuple[str, ...] = ()
    output_formats: tuple[str, ...] = ()
    backgrounds: tuple[str, ...] = ()
    gpt_image: bool = False
    revises_prompt: bool = False
    lenient: bool = False
    owned_by: str = "system"

    @property
    def default_size(self) -> str:
        return "1024x1024"


MODELS: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec("dall-e-2", ("256x256", "512x512", "1024x1024"), max_prompt=1000),
        ModelSpec(
            "dall-e-3",
            ("1024x1024", "1792x1024", "1024x1792"),
            max_n=1,
            max_prompt=4000,
            qualities=("standard", "hd"),
            styles=("vivid", "natural"),
            revises_prompt=True,
        ),
        ModelSpec(
            "gpt-image-1",
            ("1024x1024", "1536x1024", "1024x1536", "auto"),
            response_formats=(),
            qualities=("auto", "low", "medium", "high"),
            output_formats=("png", "jpeg", "webp"),
            backgrounds=("auto", "transparent", "opaque"),
            gpt_image=True,
        ),
        ModelSpec(
            "stabilityai/stable-diffusion-xl-base-1.0",
            None,
            qualities=(),
            lenient=True,
            owned_by="stabilityai",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class ImageJob:
    """A validated generation request, ready to render."""

    spec: ModelSpec
    prompt: str
    n: int
    width: int
    height: int
    response_format: str  # "url" | "b64_json"
    output_format: str  # "png" | "jpeg" | "webp"
    quality: str
    background: str
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def _invalid(spec: ModelSpec, param: str, value: object, allowed: tuple[str, ...]) -> ApiError:
    if spec.gpt_image:
        quoted = [f"'{a}'" for a in allowed]
        listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]
        message = f"Invalid value: '{value}'. Supported values are: {listed}."
        return ApiError(400, message, param=param, code="invalid_value")
    return ApiError(400, f"{value!r} is not one of {list(allowed)!r} - '{param}'", param=param)


def _unknown(param: str) -> ApiError:
    return ApiError(400, f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter")


def _check_prompt(spec: ModelSpec, prompt: object) -> str:
    if prompt is None:
        msg = "Missing required parameter: 'prompt'."
        raise ApiError(400, msg, param="prompt", code="missing_required_parameter")
    if not isinstance(prompt, str):
        msg = "Invalid type for 'prompt': expected a string, but got another type instead."
        raise ApiError(400, msg, param="prompt", code="invalid_type")
    if not prompt:
        msg = (
            "Invalid 'prompt': string too short. Expected a string with minimum length 1, "
            "but got an empty string instead."
        )
        raise ApiError(400, msg, param="prompt", code="empty_string")
    if len(prompt) > spec.max_prompt:
        msg = (
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{spec.max_prompt}, but got a string with length {len(prompt)} instead."
        )
        raise ApiError(400, msg, param="prompt", code="string_above_max_length")
    return prompt


def _check_n(spec: ModelSpec, n: object) -> int:
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool):
        msg = "Invalid type for 'n': expected an integer, but got a different type instead."
        raise ApiError(400, msg, param="n", code="invalid_type")
    if spec.max_n == 1 and n != 1:
        raise ApiError(400, "You must provide n=1 for this model.", param="n")
    if n < 1:
        msg = (
            f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} instead."
        )
        raise ApiError(400, msg, param="n", code="integer_below_min_value")
    if n > spec.max_n:
        msg = (
            f"Invalid 'n': integer above maximum value. Expected a value <= {spec.max_n}, "
            f"but got {n} instead."
        )
        raise ApiError(400, msg, param="n", code="integer_above_max_value")
    return n


def _parse_wxh(value: str) -> tuple[int, int] | None:
    width, sep, height = value.partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        return None
    return int(width), int(height)


def _check_size(spec: ModelSpec, size: object) -> tuple[int, int]:
    value = spec.default_size if size is None else size
    if spec.sizes is not None:
        if value not in spec.sizes:
            raise _invalid(spec, "size", value, spec.sizes)
        parsed = _parse_wxh(str(value))
        return parsed or (1024, 1024)  # "auto" renders square
    parsed = _parse_wxh(value) if isinstance(value, str) else None
    if parsed is None or not all(
        FREE_MIN <= side <= FREE_MAX and side % FREE_STEP == 0 for side in parsed
    ):
        msg = (
            f"Invalid size '{value}': width and height must be multiples of {FREE_STEP} "
            f"between {FREE_MIN} and {FREE_MAX}."
        )
        raise ApiError(400, msg, param="size", code="invalid_value")
    return parsed


def _choice(spec: ModelSpec, body: Mapping[str, Any], param: str, allowed: tuple[str, ...]) -> str:
    """Validate an enum parameter; empty ``allowed`` means the model has no such parameter."""
    value = body.get(param)
    if value is None:
        return allowed[0] if allowed else ""
    if not allowed:
        if spec.lenient:
            return str(value)
        raise _unknown(param)
    if value not in allowed:
        raise _invalid(spec, param, value, allowed)
    return str(value)


def _check_params(spec: ModelSpec, body: Mapping[str, Any]) -> None:
    if spec.lenient:
        return
    for key, value in body.items():
        if value is None:
            continue
        if key not in OPENAI_PARAMS or (key in _GPT_ONLY and not spec.gpt_image):
            raise _unknown(key)
    if body.get("stream"):
        raise ApiError(400, "Streaming is not supported by this test double.", param="stream")


def validate(body: Mapping[str, Any]) -> ImageJob:
    """Check a ``POST /v1/images/generations`` body as the real model would; raise ``ApiError``."""
    model = body.get("model") or "dall-e-2"
    spec = MODELS.get(model) if isinstance(model, str) else None
    if spec is None:
        msg = f"The model '{model}' does not exist or you do not have access to it."
        raise ApiError(404, msg, param="model", code="model_not_found")
    prompt = _check_prompt(spec, body.get("prompt"))
    _check_params(spec, body)
    n = _check_n(spec, body.get("n"))
    width, height = _check_size(spec, body.get("size"))
    response_format = _choice(spec, body, "response_format", spec.response_formats)
    quality = _choice(spec, body, "quality", spec.qualities)
    _choice(spec, body, "style", spec.styles)
    output_format = _choice(spec, body, "output_format", spec.output_formats) or "png"
    background = _choice(spec, body, "background", spec.backgrounds)
    if background == "transparent" and output_format == "jpeg":
        msg = "Transparent background is not supported for the jpeg output format."
        raise ApiError(400, msg, param="background", code="invalid_value")
    extras = {k: v for k, v in body.items() if k not in OPENAI_PARAMS}
    return ImageJob(
        spec=spec,
        prompt=prompt,
        n=n,
        width=width,
        height=height,
        response_format=response_format or "b64_json",
        output_format=output_format if spec.gpt_image else "png",
        quality=quality,
        background=background,
        extras=extras,
    )
