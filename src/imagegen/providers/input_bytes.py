"""How a provider gets the bytes of a request's input images: from the image store they were
verified into (``imagegen.inputs``), never from the user again."""

from __future__ import annotations

from imagegen.errors import ConfigurationError
from imagegen.models import StoredImage
from imagegen.storage.base import ImageStore


async def read_input(store: ImageStore | None, image: StoredImage, provider: str) -> bytes:
    """The stored bytes of ``image``. Raises ``ConfigurationError`` when the provider was built
    without an image store, ``NotFound`` when the image is gone."""
    if store is None:
        raise ConfigurationError(f"{provider}: no image store to read input images from")
    return b"".join([chunk async for chunk in store.iter_bytes(image.key)])
