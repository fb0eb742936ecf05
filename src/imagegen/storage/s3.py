"""Images in an S3 bucket (AWS or any S3-compatible service), through obstore.

Objects are ``<prefix>/<key>``, flat: the key is already content-addressed and S3 needs no
sharding. A download spooled by ingest is sent as one streamed ``PUT`` with a known length
through a presigned URL (obstore signs it, httpx streams the file in ``UPLOAD_CHUNK`` pieces),
so no image is ever held whole in memory; obstore's own single ``PUT`` would read the file
whole, and a multipart upload buffers 5 MiB parts. Inline bytes, already in memory, go through
obstore as they are. Each object carries its ``Content-Type`` and the immutable
``Cache-Control``, so a presigned GET answers with them too.

Foreign errors are translated here: a missing object is ``NotFound``; anything else obstore or
httpx raises becomes ``S3StorageError`` (an ``OSError`` and a ``StorageUnavailable``: 503 with
``Retry-After``), chained to the original.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

import httpx
import obstore
from obstore.exceptions import BaseError as ObstoreError

from imagegen.errors import ConfigurationError, NotFound, StorageUnavailable
from imagegen.storage.base import (
    CACHE_CONTROL,
    StoredObject,
    content_type_for_key,
    is_valid_key,
)
from imagegen.storage.s3_config import S3Config, object_store

UPLOAD_CHUNK = 256 * 1024
UPLOAD_URL_TTL = timedelta(minutes=15)  # checked when the PUT starts; a long upload may finish
PROBE_NAME = ".imagegen-ready"  # never a valid image key, so never served
PROBE_TIMEOUT = 5.0
SETTLE_SECONDS = 0.1


class S3StorageError(StorageUnavailable, OSError):
    """S3 failed (unreachable, refused, an unexpected answer); the cause is chained. An
    ``OSError`` as the protocol says, and ``StorageUnavailable``, so clients get a 503."""


class S3ImageStore:
    """An ``ImageStore`` in an S3 bucket. ``http`` carries streamed uploads; the caller owns it.

    ``staging_dir`` is a local directory for spooled downloads (deleted after upload).
    """

    def __init__(self, config: S3Config, *, http: httpx.AsyncClient, staging_dir: Path) -> None:
        self._config = config
        self._store = object_store(config)
        self._http = http
        self._staging = Path(staging_dir)

    @property
    def config(self) -> S3Config:
        return self._config

    @property
    def staging_dir(self) -> Path:
        return self._staging

    async def put(self, key: str, source: bytes | Path, content_type: str) -> bool:
        if not is_valid_key(key):
            raise ValueError(f"not a valid image key: {key!r}")
        if content_type_for_key(key) != content_type:
            raise ValueError(f"content type {content_type!r} does not match key {key!r}")
        try:
            if await self.exists(key):
                return False
            if isinstance(source, Path):
                await self._upload_file(key, source, content_type)
            else:
                await self._upload_bytes(key, source, content_type)
            return True
        finally:
            if isinstance(source, Path):
                await asyncio.to_thread(source.unlink, missing_ok=True)

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except NotFound:
            return False
        return True

    async def stat(self, key: str) -> StoredObject:
        if not is_valid_key(key):
            raise NotFound(f"image not found: {key!r}")
        with _translated(key):
            meta = await obstore.head_async(self._store, key)
        size = meta["size"]
        return StoredObject(key=key, size_bytes=size, content_type=content_type_for_key(key))

    async def iter_bytes(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        if not is_valid_key(key):
            raise NotFound(f"image not found: {key!r}")
        with _translated(key):
            result = await obstore.get_async(self._store, key)
        stream = result.stream(min_chunk_size=chunk_size)
        try:
            with _translated(key):
                async for chunk in stream:
                    yield bytes(chunk)
        finally:
            # Drop the native stream now: one left for interpreter exit may abort the process.
            del stream, result

    async def redirect_url(self, key: str) -> str | None:
        """A presigned GET URL for ``key`` when redirects are configured, else None."""
        if not self._config.presigned_redirect:
            return None
        expires = timedelta(seconds=self._config.presigned_expiry)
        with _translated(key):
            return await obstore.sign_async(self._store, "GET", key, expires)

    async def check(self) -> None:
        """HEAD a tiny probe object (written once, when missing): proves the endpoint answers,
        the credentials are accepted and the bucket exists, at the cost of one request."""
        try:
            await asyncio.wait_for(self._probe(), PROBE_TIMEOUT)
        except Exception as exc:  # readiness turns every failure into one message
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            message = f"S3 bucket {self._config.where} is not usable: {reason}"
            raise ConfigurationError(message) from exc

    async def _probe(self) -> None:
        try:
            await obstore.head_async(self._store, PROBE_NAME)
        except FileNotFoundError:
            await obstore.put_async(self._store, PROBE_NAME, b"ok", use_multipart=False)

    async def aclose(self) -> None:
        """Let obstore's runtime threads finish handing their last results to the event loop.

        A thread still inside such a hand-off when the interpreter finalizes aborts the process
        (pyo3 cannot unwind it), so shutdown waits a moment after the last request.
        """
        await asyncio.sleep(SETTLE_SECONDS)

    # --- uploads ---

    async def _upload_bytes(self, key: str, data: bytes, content_type: str) -> None:
        attributes = {"Content-Type": content_type, "Cache-Control": CACHE_CONTROL}
        with _translated(key):
            await obstore.put_async(
                self._store, key, data, attributes=attributes, use_multipart=False
            )

    async def _upload_file(self, key: str, path: Path, content_type: str) -> None:
        size = (await asyncio.to_thread(path.stat)).st_size
        with _translated(key):
            url = await obstore.sign_async(self._store, "PUT", key, UPLOAD_URL_TTL)
        headers = {
            "Content-Type": content_type,
            "Cache-Control": CACHE_CONTROL,
            "Content-Length": str(size),
        }
        with _translated(key):
            response = await self._http.put(url, content=_file_chunks(path), headers=headers)
        if response.status_code != 200:
            raise S3StorageError(
                f"S3 refused the upload of {key!r}: HTTP {response.status_code} "
                f"{_s3_error_code(response.text)}".rstrip()
            )


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    file = await asyncio.to_thread(_open, path)
    try:
        while chunk := await asyncio.to_thread(file.read, UPLOAD_CHUNK):
            yield chunk
    finally:
        file.close()


def _open(path: Path) -> BinaryIO:
    return path.open("rb")


def _s3_error_code(body: str) -> str:
    """The ``<Code>`` of an S3 error body (never the whole body: it may echo the request)."""
    start, end = body.find("<Code>"), body.find("</Code>")
    return body[start + 6 : end] if 0 <= start < end else ""


@contextlib.contextmanager
def _translated(key: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError as exc:
        raise NotFound(f"image not found: {key!r}") from exc
    except (ObstoreError, httpx.HTTPError, OSError) as exc:
        if isinstance(exc, S3StorageError):
            raise
        raise S3StorageError(f"S3 request for {key!r} failed: {type(exc).__name__}") from exc
