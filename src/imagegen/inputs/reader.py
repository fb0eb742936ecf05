"""Reading one input image: an upload's bytes, a ``data:`` URL, or an ``https`` URL fetched under
the same rules as provider outputs (``imagegen.fetch``: public addresses only, pinned, size
capped, no credentials), verified with Pillow. Every failure is an ``InvalidRequest`` naming the
field: a user's image that cannot be used is the user's 400, never a 502.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path

import httpx

from imagegen.errors import ImageFetchError, InvalidRequest
from imagegen.fetch import SafeFetcher
from imagegen.ingest import ImageInfo, decode_data_uri, inspect_image
from imagegen.netpolicy import DEFAULT_PORTS, HostAllowList

#: Formats an input may have: what OpenAI's edits and Replicate's image models all accept.
INPUT_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WebP"}


@dataclass(frozen=True, slots=True)
class InputSource:
    """One input as the request gave it: ``data`` (an upload) or ``text`` (a data or https URL).
    ``field`` names it in errors: ``image``, ``image[1]``, ``mask``."""

    field: str
    text: str | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class InputBlob:
    """A verified input image, not stored yet."""

    field: str
    data: bytes
    info: ImageInfo
    sha256: str
    source_url: str | None = None


class InputReader:
    """Reads and verifies input images. ``fetcher`` downloads URLs (its host policy decides
    where it may go); ``trusted`` are the configured hosts that may also be reached over plain
    ``http``. Owns nothing it is given."""

    def __init__(
        self,
        fetcher: SafeFetcher,
        *,
        staging_dir: Path,
        max_bytes: int,
        max_pixels: int,
        trusted: HostAllowList | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._staging_dir = staging_dir
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels
        self._trusted = trusted or HostAllowList(builtin=())

    async def read(self, source: InputSource) -> InputBlob:
        """The verified image; ``InvalidRequest`` naming ``source.field`` otherwise."""
        field = source.field
        if source.data is not None:
            return await self._verify(field, source.data, None)
        text = (source.text or "").strip()
        if text[:5].lower() == "data:":
            try:
                data = decode_data_uri(text, self._max_bytes)
            except ImageFetchError as exc:
                raise _invalid(field, exc.message) from exc
            return await self._verify(field, data, None)
        return await self._verify(field, await self._download(field, text), text)

    async def _download(self, field: str, url: str) -> bytes:
        self._check_url(field, url)
        try:
            fetched = await self._fetcher.fetch(url, self._staging_dir)
        except ImageFetchError as exc:
            raise _invalid(field, exc.message) from exc
        try:
            if fetched.size_bytes > self._max_bytes:
                raise _invalid(field, f"image is larger than {self._max_bytes} bytes")
            return await asyncio.to_thread(fetched.path.read_bytes)
        finally:
            await asyncio.to_thread(fetched.path.unlink, missing_ok=True)

    def _check_url(self, field: str, url: str) -> None:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise _invalid(field, "must be a data: URL or an https URL") from exc
        host = parsed.host
        if parsed.scheme == "https" and host:
            return
        trusted = (
            parsed.scheme == "http"
            and host
            and self._trusted.trusts(host, parsed.port or DEFAULT_PORTS["http"])
        )
        if not trusted:
            raise _invalid(field, "must be a data: URL or an https URL")

    async def _verify(self, field: str, data: bytes, source_url: str | None) -> InputBlob:
        if len(data) > self._max_bytes:
            raise _invalid(field, f"image is larger than {self._max_bytes} bytes")
        try:
            info, digest = await asyncio.to_thread(_inspect, data, self._max_pixels)
        except ImageFetchError as exc:
            raise _invalid(field, exc.message) from exc
        if info.ext not in INPUT_FORMATS:
            raise _invalid(field, "must be a PNG, JPEG or WebP image")
        return InputBlob(field, data, info, digest, source_url)


def _inspect(data: bytes, max_pixels: int) -> tuple[ImageInfo, str]:
    return inspect_image(data, max_pixels), hashlib.sha256(data).hexdigest()


def _invalid(field: str, reason: str) -> InvalidRequest:
    return InvalidRequest(f"{field}: {reason}", field=field)
