"""Turn provider outputs into durable images: download, verify, store under a content key.

``ImageIngestor.ingest(url)`` takes what a provider returned (an ``http(s)`` URL or a ``data:``
URI); ``ingest_bytes`` takes raw bytes (providers that answer in base64). Either way the bytes
are checked (``inspect_image``: Pillow, or a simple WebP's header) on the event loop when they
are few, in a worker thread otherwise; the real format decides the content type and the
extension, and the image is stored once under ``<sha256>.<ext>`` however often it is ingested.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from imagegen.errors import ImageFetchError
from imagegen.fetch import MEMORY_BYTES, FetchedBytes, SafeFetcher
from imagegen.models import StoredImage
from imagegen.storage.base import CONTENT_TYPES, ImageStore, make_key
from imagegen.webp_header import HEAD_BYTES, MalformedWebP, is_webp, read_webp_header

# Below Pillow's own warning threshold (~89 Mpx), so an image Pillow would merely warn about is
# refused here; Pillow's hard limit (2x that) raises DecompressionBombError, also refused.
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
_PILLOW_MAX_PIXELS = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS, its warning threshold
# Images up to this size are inspected on the event loop: a header read (and for a PNG a CRC
# pass over these few bytes) costs less than the hop to a worker thread and back.
INLINE_BYTES = 64 * 1024

# Pillow format -> key extension. Only these decoders are ever tried (a smaller attack surface).
EXTENSIONS: dict[str, str] = {
    "PNG": "png",
    "JPEG": "jpg",
    "MPO": "jpg",
    "WEBP": "webp",
    "GIF": "gif",
}
_DECODERS = ["PNG", "JPEG", "WEBP", "GIF"]
_OWN = "imagegen"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What Pillow says an image really is."""

    ext: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.ext]


def inspect_image(source: Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Verify ``source`` is a PNG, JPEG, WebP or GIF within ``max_pixels``; blocking.

    Raises ``ImageFetchError`` for anything that is not a decodable image of those formats or
    that is too large to decode safely. A simple WebP is checked from its header alone
    (``webp_header.py``: as much as Pillow checks, without allocating its canvas); the rest is
    opened once with Pillow, which reads the size and format from the header, then ``verify``.
    """
    with _stream(source) as stream:
        head = stream.read(HEAD_BYTES)
        if is_webp(head):
            simple = _webp_size(head, _length(source, stream), max_pixels)
            if simple is not None:
                return simple
        stream.seek(0)
        return _inspect_with_pillow(stream, max_pixels)


def _webp_size(head: bytes, size: int, max_pixels: int) -> ImageInfo | None:
    """A simple WebP's size from its header; None for an extended one (for Pillow), after its
    canvas size is checked against the limits."""
    try:
        header = read_webp_header(head, size)
    except MalformedWebP as exc:
        raise ImageFetchError("not a decodable image", provider=_OWN) from exc
    _check_pixels(header.width, header.height, max_pixels)
    return ImageInfo("webp", header.width, header.height) if header.simple else None


def _inspect_with_pillow(stream: BinaryIO, max_pixels: int) -> ImageInfo:
    from PIL import Image  # on first use: serving starts without Pillow

    try:
        with Image.open(stream, formats=_DECODERS) as image:  # size and format: the header
            width, height = image.size
            ext = EXTENSIONS.get(image.format or "")
            image.verify()
    except Image.DecompressionBombError as exc:
        raise ImageFetchError("image is too large to decode safely", provider=_OWN) from exc
    except Exception as exc:  # Pillow signals corrupt input with many exception types
        raise ImageFetchError("not a decodable image", provider=_OWN) from exc
    if ext is None:
        raise ImageFetchError("not a decodable image (unsupported format)", provider=_OWN)
    _check_pixels(width, height, max_pixels)
    return ImageInfo(ext=ext, width=width, height=height)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > 2 * _PILLOW_MAX_PIXELS:  # what Pillow refuses as a decompression bomb
        raise ImageFetchError("image is too large to decode safely", provider=_OWN)
    if width * height > max_pixels:
        message = f"image is {width}x{height} pixels, more than the {max_pixels} pixel limit"
        raise ImageFetchError(message, provider=_OWN)


def _stream(source: Path | bytes) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")


def _length(source: Path | bytes, stream: BinaryIO) -> int:
    return len(source) if isinstance(source, bytes) else os.fstat(stream.fileno()).st_size


def decode_data_uri(uri: str, max_bytes: int) -> bytes:
    """The bytes of a ``data:`` URI (base64 or percent-encoded), at most ``max_bytes`` of them.

    Raises ``ImageFetchError`` when the URI is malformed or its content is too large.
    """
    scheme, _, rest = uri.partition(":")
    header, comma, payload = rest.partition(",")
    if scheme.strip().lower() != "data" or not comma:
        raise ImageFetchError("malformed data: URI", provider=_OWN)
    if header.strip().lower().endswith(";base64"):
        data = _decode_base64(payload, max_bytes)
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return data


def _decode_base64(payload: str, max_bytes: int) -> bytes:
    compact = "".join(urllib.parse.unquote(payload).split())
    if len(compact) // 4 * 3 > max_bytes + 3:  # refuse before allocating the decoded copy
        raise _too_large(max_bytes)
    compact = compact.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except binascii.Error as exc:
        raise ImageFetchError("malformed base64 in data: URI", provider=_OWN) from exc


def _too_large(max_bytes: int) -> ImageFetchError:
    return ImageFetchError(f"image is larger than {max_bytes} bytes", provider=_OWN)


class ImageIngestor:
    """Downloads (with ``fetcher``), verifies, and stores (in ``store``) provider outputs.

    Implements ``imagegen.jobs.protocols.Ingestor``. Owns neither dependency. Every failure is
    an ``ImageFetchError``, except storage failures, which propagate as the store raises them.
    A download of at most ``memory_bytes`` is kept in memory and reaches the disk only when the
    store has not got it yet; a larger one is streamed to a spool file the store takes over.
    """

    def __init__(
        self,
        store: ImageStore,
        fetcher: SafeFetcher,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        memory_bytes: int = MEMORY_BYTES,
    ) -> None:
        self._store = store
        self._fetcher = fetcher
        self._max_pixels = max_pixels
        self._memory_bytes = memory_bytes

    async def ingest(self, url: str) -> StoredImage:
        """Store the image at ``url`` (``http``, ``https`` or ``data:``)."""
        if url.lstrip()[:5].lower() == "data:":
            return await self.ingest_bytes(decode_data_uri(url, self._fetcher.max_bytes))
        fetched = await self._fetcher.fetch_body(
            url, self._store.staging_dir, memory_bytes=self._memory_bytes
        )
        if isinstance(fetched, FetchedBytes):  # small: no file unless the image is new
            return await self._store_bytes(fetched.data, fetched.sha256, url)
        try:
            info = await self._inspect(fetched.path, fetched.size_bytes)
            key = make_key(fetched.sha256, info.ext)
            await self._store.put(key, fetched.path, info.content_type)
        except BaseException:  # a stored file is the store's: it moved it in or deleted it
            fetched.path.unlink(missing_ok=True)
            raise
        return _stored(key, info, fetched.size_bytes, url)

    async def ingest_bytes(self, data: bytes, *, source_url: str | None = None) -> StoredImage:
        """Store an image the provider returned inline (base64-decoded bytes)."""
        if len(data) > self._fetcher.max_bytes:
            raise _too_large(self._fetcher.max_bytes)
        return await self._store_bytes(data, None, source_url)

    async def _store_bytes(
        self, data: bytes, digest: str | None, source_url: str | None
    ) -> StoredImage:
        """Verify and store ``data`` (its sha256 ``digest``, or None to compute it here)."""
        if len(data) <= INLINE_BYTES:
            info, sha256 = self._inspect_bytes(data, digest)
        else:
            info, sha256 = await asyncio.to_thread(self._inspect_bytes, data, digest)
        key = make_key(sha256, info.ext)
        await self._store.put(key, data, info.content_type)
        return _stored(key, info, len(data), source_url)

    async def _inspect(self, path: Path, size: int) -> ImageInfo:
        """A small file is inspected on the event loop, a large one in a worker thread."""
        if size <= INLINE_BYTES:
            return inspect_image(path, self._max_pixels)
        return await asyncio.to_thread(inspect_image, path, self._max_pixels)

    def _inspect_bytes(self, data: bytes, digest: str | None) -> tuple[ImageInfo, str]:
        info = inspect_image(data, self._max_pixels)
        return info, digest if digest is not None else hashlib.sha256(data).hexdigest()


def _stored(key: str, info: ImageInfo, size: int, source_url: str | None) -> StoredImage:
    return StoredImage(
        key=key,
        content_type=info.content_type,
        width=info.width,
        height=info.height,
        size_bytes=size,
        source_url=source_url,
    )
