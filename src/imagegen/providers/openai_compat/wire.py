"""The ``/v1/images/generations`` wire format: request bodies, replies, and error translation."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from imagegen.errors import (
    ModelNotFound,
    PredictionFailed,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from imagegen.models import GenerationRequest, ProviderImage
from imagegen.providers.openai_compat.rules import ModelRules, size_for
from imagegen.retry_after import DEFAULT_MAX_RETRY_AFTER, clamp, parse_retry_after, seconds_of
from imagegen.upstream import Reply

ResponseFormat = Literal["url", "b64_json"]

_FORMAT_ALIASES = {"jpg": "jpeg"}
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_MAGIC = ((b"\x89PNG", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF8", "gif"))


class _Item(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class _Reply(BaseModel):
    data: list[_Item] | None = None
    output_format: str | None = None


class _ErrorDetail(BaseModel):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class _ErrorEnvelope(BaseModel):
    error: _ErrorDetail | str


def output_format_for(request: GenerationRequest, rules: ModelRules) -> str | None:
    """The ``output_format`` to send, if the model takes one and the user asked for it."""
    if request.output_format is None:
        return None
    fmt = request.output_format.lower()
    fmt = _FORMAT_ALIASES.get(fmt, fmt)
    return fmt if fmt in rules.output_formats else None


def build_body(
    request: GenerationRequest, rules: ModelRules, n: int, response_format: ResponseFormat
) -> dict[str, Any]:
    """One request body asking for ``n`` images, shaped by the model's ``rules``."""
    body: dict[str, Any] = {
        "model": request.model,
        "prompt": request.prompt,
        "n": n,
        "size": size_for(rules, request.width, request.height),
    }
    if not rules.b64_only:
        body["response_format"] = response_format
    output_format = output_format_for(request, rules)
    if output_format is not None:
        body["output_format"] = output_format
    if not rules.openai_native:
        if request.seed is not None:
            body["seed"] = request.seed
        if request.negative_prompt is not None:
            body["negative_prompt"] = request.negative_prompt
    return body


def form_fields(body: dict[str, Any]) -> dict[str, str]:
    """A JSON body's fields as multipart form values (``/v1/images/edits`` is a form)."""
    return {name: str(value) for name, value in body.items()}


def edit_files(
    images: list[tuple[bytes, str]], mask: tuple[bytes, str] | None
) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The files of an edit, as OpenAI's SDK sends them: ``image`` (``image[]`` when there are
    several) and ``mask``; each ``(bytes, content type)``."""
    name = "image" if len(images) == 1 else "image[]"
    files = [
        (name, (f"image-{i}.{_ext(kind)}", data, kind)) for i, (data, kind) in enumerate(images)
    ]
    if mask is not None:
        files.append(("mask", (f"mask.{_ext(mask[1])}", mask[0], mask[1])))
    return files


def _ext(content_type: str) -> str:
    return {"image/jpeg": "jpg", "image/webp": "webp"}.get(content_type, "png")


def _sniff(b64: str) -> str | None:
    try:
        head = base64.b64decode(b64[:16])
    except (binascii.Error, ValueError):
        return None
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)


def _data_uri(b64: str, known_format: str | None) -> str:
    fmt = known_format or _sniff(b64) or "png"
    mime = _MIME.get(fmt, f"image/{fmt}")
    return f"data:{mime};base64,{b64}"


def parse_images(response: Reply, provider: str, sent_format: str | None) -> list[ProviderImage]:
    """Images from a 2xx reply; ``PredictionFailed`` if it holds none, ``UpstreamUnavailable``
    if it is not the expected JSON."""
    try:
        reply = _Reply.model_validate_json(response.content)
    except ValidationError as exc:
        message = f"{provider}: the upstream sent a malformed reply"
        raise UpstreamUnavailable(message, provider=provider) from exc
    known_format = reply.output_format or sent_format
    images = [
        ProviderImage(
            url=item.url or _data_uri(item.b64_json or "", known_format),
            revised_prompt=item.revised_prompt or None,
        )
        for item in reply.data or ()
        if item.url or item.b64_json
    ]
    if not images:
        raise PredictionFailed(f"{provider}: the upstream returned no images", provider=provider)
    return images


def retry_after(
    headers: Mapping[str, str], maximum: float = DEFAULT_MAX_RETRY_AFTER
) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date),
    clamped to ``maximum`` (``imagegen.retry_after``)."""
    millis = seconds_of(headers.get("retry-after-ms"))
    if millis is not None:
        return clamp(millis / 1000, maximum)
    return clamp(parse_retry_after(headers.get("retry-after")), maximum)


def _error_fields(response: Reply) -> tuple[str, str | None]:
    """The upstream's own (message, code-or-type), falling back to the status text."""
    try:
        envelope = _ErrorEnvelope.model_validate_json(response.content)
    except ValidationError:
        text = response.text.strip()[:1000]
        return text or response.reason_phrase or f"HTTP {response.status_code}", None
    if isinstance(envelope.error, str):
        return envelope.error, None
    detail = envelope.error
    code = detail.code if detail.code is not None else detail.type
    message = detail.message or response.reason_phrase or f"HTTP {response.status_code}"
    return message, None if code is None else str(code)[:100]


def _unchanged(text: str) -> str:
    return text


def error_from_response(
    response: Reply,
    provider: str,
    *,
    model: str | None = None,
    scrub: Callable[[str], str] = _unchanged,
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
) -> UpstreamError | ModelNotFound:
    """Translate a non-2xx reply, by status and the upstream's code: 404 or ``model_not_found``
    -> ``ModelNotFound`` (naming ``model``), 429 -> ``UpstreamRateLimited``, else
    ``UpstreamHTTPError`` keeping the upstream's status. Text goes through ``scrub``
    (credentials redacted, bounded); retry-after is clamped to ``max_retry_after``."""
    upstream_message, code = _error_fields(response)
    upstream_message = scrub(upstream_message)
    code = None if code is None else scrub(code)
    message = f"{provider}: {upstream_message}"
    status = response.status_code
    if model is not None and (status == 404 or code == "model_not_found"):
        found = f"model '{model}' was not found on {provider}: {upstream_message}"
        return ModelNotFound(found, model=model)
    if status == 429:
        return UpstreamRateLimited(
            message,
            provider=provider,
            title=code,
            detail=upstream_message,
            retry_after=retry_after(response.headers, max_retry_after),
        )
    return UpstreamHTTPError(
        message, provider=provider, status=status, title=code, detail=upstream_message
    )
