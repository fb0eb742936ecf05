"""How an input image reaches Replicate: inline as a data URL when small, else uploaded to
Replicate's files API (``POST /v1/files``) and passed by the file's URL (``urls.get``).

The threshold is Replicate's own: its API reference for ``POST /v1/predictions`` (``input``)
says to "use a data URL when you have a small file <= 256kb" and an HTTP URL for "a large file
> 256kb". imagegen counts the file's bytes (before base64) and reads "kb" as 1000 bytes, the
stricter reading.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from imagegen.models import StoredImage
from imagegen.providers.replicate.client import ReplicateClient

DATA_URL_MAX_BYTES = 256 * 1000
_ELIDE_OVER = 200  # characters: longer data URLs are shortened in recorded inputs


def data_url(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"


async def input_url(
    client: ReplicateClient, image: StoredImage, data: bytes, *, deadline: float
) -> str:
    """A URL Replicate accepts for ``image``: a data URL, or its uploaded file's URL."""
    if len(data) <= DATA_URL_MAX_BYTES:
        return data_url(data, image.content_type)
    return await client.upload_file(
        data, content_type=image.content_type, filename=image.key, deadline=deadline
    )


def recordable(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` as stored with the generation: data URLs shortened to their header and size
    (the image itself is in the generation's ``inputs``, by key)."""
    return {name: _elide(value) for name, value in inputs.items()}


def _elide(value: Any) -> Any:
    if isinstance(value, list):
        return [_elide(item) for item in value]
    if isinstance(value, str) and value.startswith("data:") and len(value) > _ELIDE_OVER:
        header = value.split(",", 1)[0]
        return f"{header},... ({len(value)} characters)"
    return value
