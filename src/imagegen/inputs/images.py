"""A request's input images, checked together and stored only when every one is good."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from imagegen.errors import InvalidRequest
from imagegen.inputs.reader import InputBlob, InputReader, InputSource
from imagegen.models import StoredImage
from imagegen.storage.base import ImageStore, make_key


class InputImages:
    """Reads, checks and stores the input images of one request. Owns neither dependency."""

    def __init__(self, reader: InputReader, store: ImageStore, *, max_images: int) -> None:
        self._reader = reader
        self._store = store
        self._max_images = max_images

    async def prepare(
        self, images: Sequence[InputSource], mask: InputSource | None = None
    ) -> tuple[tuple[StoredImage, ...], StoredImage | None]:
        """The stored images and mask. Raises ``InvalidRequest`` naming the field at fault
        (not an image, too large, too many pixels, unreachable, a mask of another size)
        before anything is stored; a mask without an image is refused too."""
        if len(images) > self._max_images:
            raise InvalidRequest(
                f"image: at most {self._max_images} images may be sent", field="image"
            )
        if mask is not None and not images:
            raise InvalidRequest("mask: needs an image to apply to", field="mask")
        sources = [*images, *([mask] if mask is not None else [])]
        blobs = list(await asyncio.gather(*(self._reader.read(source) for source in sources)))
        mask_blob = blobs.pop() if mask is not None else None
        if mask_blob is not None:
            _check_mask(blobs[0], mask_blob)
        stored = [await self._put(blob) for blob in blobs]
        return tuple(stored), None if mask_blob is None else await self._put(mask_blob)

    async def _put(self, blob: InputBlob) -> StoredImage:
        key = make_key(blob.sha256, blob.info.ext)
        await self._store.put(key, blob.data, blob.info.content_type)
        return StoredImage(
            key=key,
            content_type=blob.info.content_type,
            width=blob.info.width,
            height=blob.info.height,
            size_bytes=len(blob.data),
            source_url=blob.source_url,
        )


def _check_mask(image: InputBlob, mask: InputBlob) -> None:
    size = (mask.info.width, mask.info.height)
    wanted = (image.info.width, image.info.height)
    if size != wanted:
        raise InvalidRequest(
            f"mask: must have the size of the image ({wanted[0]}x{wanted[1]}), "
            f"not {size[0]}x{size[1]}",
            field="mask",
        )
