"""The multipart form of ``POST /v1/images/edits``, read as OpenAI's SDK sends it.

Files: ``image`` (one), or ``image[]`` / ``image[N]`` (several), and ``mask``. Text fields are
strings on the wire, so numbers are read from decimal digits here and then checked by the same
model as ``/v1/images/generations`` (``ImageGenerationRequest``). The body is read whole under
``max_bytes`` before python-multipart parses it, so an endless upload stops at the cap.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from imagegen.api.openai_schemas import ImageGenerationRequest
from imagegen.errors import InvalidRequest
from imagegen.inputs import InputSource

_IMAGE = re.compile(r"^image(\[[0-9]*\])?$")
_INTEGERS = frozenset({"n", "output_compression", "partial_images", "seed"})
_TEXT = frozenset(
    {
        "prompt",
        "model",
        "size",
        "response_format",
        "output_format",
        "quality",
        "background",
        "moderation",
        "user",
        "safety_identifier",
        "negative_prompt",
        "stream",
    }
)
#: Edit-only options, accepted and recorded on the job (``metadata.openai_options``).
EDIT_OPTIONS = frozenset({"input_fidelity"})
_MAX_FIELD_BYTES = 64 * 1024


@dataclass(slots=True)
class EditForm:
    """The form, read: the fields as ``ImageGenerationRequest`` takes them, the files, and a
    digest of its content (for ``Idempotency-Key``)."""

    fields: dict[str, Any] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    images: list[InputSource] = field(default_factory=list)
    mask: InputSource | None = None
    digest: str = ""

    def to_request(self) -> ImageGenerationRequest:
        """The fields checked as ``/v1/images/generations`` checks them; 400 naming a field."""
        try:
            return ImageGenerationRequest.model_validate(self.fields)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0]) if error["loc"] else "body"
            raise InvalidRequest(f"{name}: {error['msg']}", field=name) from None


async def read_edit_form(request: Request, *, max_bytes: int, max_files: int) -> EditForm:
    """Read and sort the form; ``InvalidRequest`` naming the field for anything malformed."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data":
        raise InvalidRequest("Content-Type: must be multipart/form-data", field="Content-Type")
    body = await _read_capped(request, max_bytes)
    parser = MultiPartParser(
        request.headers,
        _replay(body),
        max_files=max_files,
        max_fields=64,
        max_part_size=_MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"image: {exc.message}", field="image") from exc
    result = EditForm()
    try:
        for name, value in form.multi_items():
            await _add(result, name, value)
    finally:
        await form.close()
    result.digest = _digest(result)
    if not result.images:
        raise InvalidRequest("image: required (one or more image files)", field="image")
    if len(result.images) > 1:  # name each by its index, so errors say which one
        result.images = [
            InputSource(f"image[{i}]", data=source.data) for i, source in enumerate(result.images)
        ]
    return result


async def _add(form: EditForm, name: str, value: str | UploadFile) -> None:
    if _IMAGE.match(name) or name == "mask":
        field_name = "image" if name != "mask" else "mask"
        if not isinstance(value, UploadFile):
            raise InvalidRequest(f"{field_name}: must be a file", field=field_name)
        source = InputSource(field_name, data=await value.read())
        if name == "mask":
            if form.mask is not None:
                raise InvalidRequest("mask: only one mask may be sent", field="mask")
            form.mask = source
        else:
            form.images.append(source)
        return
    if isinstance(value, UploadFile):
        raise InvalidRequest(f"{name}: must be a text field, not a file", field=name)
    if name in form.fields or name in form.options:
        raise InvalidRequest(f"{name}: sent more than once", field=name)
    if name in EDIT_OPTIONS:
        form.options[name] = value
    elif name in _INTEGERS:
        form.fields[name] = _integer(name, value)
    elif name == "stream":
        form.fields[name] = _boolean(name, value)
    elif name in _TEXT:
        form.fields[name] = value
    else:
        raise InvalidRequest(f"{name}: unknown parameter", field=name)


def _digest(form: EditForm) -> str:
    """The form's content, whatever its boundary or part order: the fields, then each file's
    digest in order (a retried request must match its first attempt)."""
    files = [hashlib.sha256(source.data or b"").hexdigest() for source in form.images]
    mask = None if form.mask is None else hashlib.sha256(form.mask.data or b"").hexdigest()
    canonical = json.dumps(
        {"fields": form.fields, "options": form.options, "images": files, "mask": mask},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _integer(name: str, value: str) -> int:
    text = value.strip()
    if not text.isascii() or not text.lstrip("-").isdigit():
        raise InvalidRequest(f"{name}: must be an integer", field=name)
    return int(text)


def _boolean(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise InvalidRequest(f"{name}: must be true or false", field=name)
    return text == "true"


async def _read_capped(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_large = InvalidRequest(
        f"image: the request is larger than {max_bytes} bytes", field="image"
    )
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)


async def _replay(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body
