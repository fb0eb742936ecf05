"""``POST /v1/images/edits`` for the OpenAI double: OpenAI's multipart form (``image`` or
``image[]`` files, ``mask``, the generation's text fields), checked as the real API checks it:
edit-capable models only, decodable images, a mask of the first image's size."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request
from tests.fakes.openai_models import MODELS, ApiError, ImageJob, validate

EDIT_MODELS = frozenset(name for name in MODELS if name == "dall-e-2" or name.startswith("gpt-"))
_INTEGER_FIELDS = ("n", "output_compression", "partial_images")


def _size_of(data: bytes, param: str, index: int) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.size
    except Exception:
        message = f"Invalid image file or mode for image {index + 1}, please check your image file."
        raise ApiError(400, message, param=param, code="invalid_image_file") from None


def _transparent_fraction(data: bytes) -> float | None:
    """The share of fully transparent pixels of a mask; None when it has no alpha channel."""
    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("RGBA", "LA"):
            return None
        alpha = image.getchannel("A")
        clear = alpha.histogram()[0]
        return clear / (image.width * image.height)


async def read_edit(request: Request) -> tuple[ImageJob, dict[str, Any]]:
    """The validated job, and what the double records about the request."""
    form = await request.form()
    images: list[bytes] = []
    mask: bytes | None = None
    fields: dict[str, Any] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            if name == "mask":
                mask = data
            elif name == "image" or name.startswith("image["):
                images.append(data)
            else:
                raise ApiError(400, f"Unknown file parameter: '{name}'.", param=name)
        else:
            fields[name] = value
    await form.close()
    model = str(fields.get("model") or "dall-e-2")
    if model not in EDIT_MODELS:
        message = f"Invalid model {model}. The model does not support image edits."
        raise ApiError(400, message, param="model", code="invalid_value")
    if not images:
        raise ApiError(400, "Missing required parameter: 'image'.", param="image")
    sizes = [_size_of(data, "image", i) for i, data in enumerate(images)]
    mask_size = None if mask is None else _size_of(mask, "mask", 0)
    clear = None if mask is None else _transparent_fraction(mask)
    if clear is None and mask is not None:
        message = (
            "Invalid input image - format must be in ['RGBA', 'LA'], got a mask without alpha."
        )
        raise ApiError(400, message, param="mask", code="invalid_image_format")
    if mask_size is not None and mask_size != sizes[0]:
        message = "Invalid mask image format - mask size does not match image size"
        raise ApiError(400, message, param="mask", code="invalid_image_format")
    fields.pop("input_fidelity", None)
    body: dict[str, Any] = dict(fields)
    for name in _INTEGER_FIELDS:
        if name in body:
            try:
                body[name] = int(body[name])
            except ValueError:
                raise ApiError(400, f"Invalid type for '{name}'.", param=name) from None
    job = validate(body)
    record = {
        **fields,
        "endpoint": "edits",
        "image_sizes": [list(size) for size in sizes],
        "mask_size": None if mask_size is None else list(mask_size),
        "mask_transparent": clear,
    }
    return job, record
