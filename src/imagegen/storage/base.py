"""The storage seam: where verified images live, addressed by their content.

Keys are ``<sha256 hex>.<ext>`` (``ext`` one of png, jpg, webp, gif, taken from the decoded
format), so the same bytes always get the same key and a key never changes meaning: stored
objects are immutable and safe to cache forever. Every backend (local disk, S3) implements
``ImageStore``; callers never build paths or object names themselves. A backend that can hand
clients a direct link instead of streaming the bytes itself also implements ``RedirectingStore``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

KEY_PATTERN = re.compile(r"^[0-9a-f]{64}\.(png|jpg|webp|gif)$")

#: Stored images never change under their key: caches may keep them for a year, unrevalidated.
CACHE_CONTROL = "public, max-age=31536000, immutable"

CONTENT_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}


def is_valid_key(key: str) -> bool:
    """Whether ``key`` is a well-formed content-addressed key (nothing else is ever stored)."""
    return KEY_PATTERN.fullmatch(key) is not None


def make_key(sha256_hex: str, ext: str) -> str:
    """Build the key for content with digest ``sha256_hex`` and extension ``ext``.

    Raises ``ValueError`` when the digest or extension is malformed.
    """
    key = f"{sha256_hex.lower()}.{ext}"
    if not is_valid_key(key):
        raise ValueError(f"not a valid image key: {key!r}")
    return key


def content_type_for_key(key: str) -> str:
    """The media type implied by a valid key's extension; ``ValueError`` for an invalid key."""
    if not is_valid_key(key):
        raise ValueError(f"not a valid image key: {key!r}")
    return CONTENT_TYPES[key.rsplit(".", 1)[1]]


def etag_for_key(key: str) -> str:
    """The strong ETag of a stored image: its sha256, quoted."""
    return f'"{key.split(".", 1)[0]}"'


def image_url(key: str, base_url: str) -> str:
    """The public URL imagegen serves ``key`` at: ``{base_url}/images/{key}``."""
    return f"{base_url.rstrip('/')}/images/{key}"


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a store knows about one stored image, enough to answer a GET or HEAD."""

    key: str
    size_bytes: int
    content_type: str

    @property
    def etag(self) -> str:
        return etag_for_key(self.key)


@runtime_checkable
class ImageStore(Protocol):
    """A content-addressed, write-once store of verified images.

    Keys must match ``KEY_PATTERN``; a method given any other key raises ``NotFound`` (reads) or
    ``ValueError`` (writes), and never touches anything outside the store. A store that cannot
    write (disk full, read-only, not permitted) raises ``imagegen.errors.StorageUnavailable``;
    other backend failures surface as ``OSError`` or the backend's own error.
    """

    @property
    def staging_dir(self) -> Path:
        """A local directory for spooling downloads before ``put``.

        For the local store it is on the same filesystem as the images, so ``put`` is a rename.
        """
        ...

    async def put(self, key: str, source: bytes | Path, content_type: str) -> bool:
        """Store ``source`` under ``key``, atomically: readers see all of it or nothing.

        A ``Path`` source must be a file in ``staging_dir``; the store takes it over (moves it in,
        or deletes it when ``key`` already exists). Idempotent: storing an existing key keeps the
        existing object. Returns True when the object is new, False when it was already there.
        """
        ...

    async def exists(self, key: str) -> bool:
        """Whether ``key`` is stored (False for a malformed key)."""
        ...

    async def stat(self, key: str) -> StoredObject:
        """Size and content type of ``key``; raises ``imagegen.errors.NotFound``."""
        ...

    def iter_bytes(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """The object's bytes in chunks. Raises ``NotFound`` on first iteration if it is missing.

        The iterator holds its resources only while iterated and releases them when exhausted or
        closed (``aclose``), so a response that is never sent leaks nothing.
        """
        ...

    async def check(self) -> None:
        """Readiness probe, a real write: raises ``imagegen.errors.StorageUnavailable`` if the
        store cannot take one."""
        ...


@runtime_checkable
class RedirectingStore(Protocol):
    """A store whose objects clients may fetch directly (a presigned S3 URL)."""

    async def redirect_url(self, key: str) -> str | None:
        """A short-lived URL to GET the stored ``key`` from, or None to stream it instead.

        Called only for a key the store has just reported as present.
        """
        ...
