"""What an image model does with its image inputs: open them. A data URL or a file the double
served (``.../v1/files/{id}``) must decode as an image; anything else is refused with
Replicate's 422 validation shape, so a client that sends a wrong URL or broken bytes fails the
test that made it. The decoded sizes are returned (and kept on the prediction for the stats)."""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from typing import Any

from PIL import Image
from tests.fakes.replicate.uploads import UploadStore
from tests.fakes.replicate.validation import InvalidField
from tests.fakes.replicate_models import ModelSpec


def check_image_inputs(
    model: ModelSpec, given: Mapping[str, Any], uploads: UploadStore
) -> tuple[list[InvalidField], dict[str, dict[str, Any]]]:
    """(errors, ``{input: {"width", "height", "via"}}``) for the model's image inputs."""
    errors: list[InvalidField] = []
    seen: dict[str, dict[str, Any]] = {}
    for name in model.image_inputs:
        value = given.get(name)
        if value is None:
            continue
        data, via = _bytes_of(value, uploads)
        size = None if data is None else _decode(data)
        if size is None:
            description = f"{name}: could not open the image at the given URL or data URL"
            errors.append(InvalidField("format", f"input.{name}", description))
            continue
        seen[name] = {"width": size[0], "height": size[1], "via": via}
    if not errors and "image" in seen and "mask" in seen:
        image, mask = seen["image"], seen["mask"]
        if (image["width"], image["height"]) != (mask["width"], mask["height"]):
            description = "mask: must have the same size as image"
            errors.append(InvalidField("format", "input.mask", description))
    return errors, seen


def _bytes_of(value: Any, uploads: UploadStore) -> tuple[bytes | None, str]:
    if not isinstance(value, str):
        return None, "other"
    if value.startswith("data:"):
        header, _, payload = value.partition(",")
        if not header.endswith(";base64"):
            return None, "data_url"
        try:
            return base64.b64decode(payload, validate=True), "data_url"
        except (binascii.Error, ValueError):
            return None, "data_url"
    upload = uploads.find_by_url(value)
    return (None, "url") if upload is None else (upload.data, "file")


def _decode(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.size
    except Exception:
        return None
