"""Images on local disk: ``<root>/ab/cd/<key>``, written atomically via a temp file and rename.

Downloads are spooled in ``<root>/tmp`` (same filesystem), so storing one is a single
``os.replace``. Blocking file work runs in worker threads to keep the event loop free, except
a single ``stat`` (one that finds an image already stored, or sizes one to serve): cheaper than
the hop to a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from imagegen.errors import NotFound, StorageUnavailable
from imagegen.storage.base import (
    CONTENT_TYPES,
    StoredObject,
    content_type_for_key,
    is_valid_key,
)
from imagegen.storage.faults import storage_fault


class LocalImageStore:
    """An ``ImageStore`` on the local filesystem under ``root`` (``settings.images_dir``)."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._root_name = os.fspath(self._root)  # put's paths are strings: no Path per call
        self._staging = self._root / "tmp"

    @property
    def root(self) -> Path:
        return self._root

    @property
    def staging_dir(self) -> Path:
        return self._staging

    def path_for(self, key: str) -> Path:
        """The file a valid key lives in; ``NotFound`` for a malformed key (no path is built)."""
        if not is_valid_key(key):
            raise NotFound(f"image not found: {key!r}")
        return self._root / key[0:2] / key[2:4] / key

    async def put(self, key: str, source: bytes | Path, content_type: str) -> bool:
        if not is_valid_key(key):
            raise ValueError(f"not a valid image key: {key!r}")
        if CONTENT_TYPES[key.rsplit(".", 1)[1]] != content_type:
            raise ValueError(f"content type {content_type!r} does not match key {key!r}")
        dest = os.path.join(self._root_name, key[0:2], key[2:4], key)
        try:
            if _already_stored(dest, source):  # one stat on the loop: cheaper than a thread hop
                return False
            return await asyncio.to_thread(self._put_sync, Path(dest), source)
        except OSError as exc:
            fault = storage_fault(exc, self._root)
            if fault is None:
                raise
            raise fault from exc

    async def exists(self, key: str) -> bool:
        if not is_valid_key(key):
            return False
        return await asyncio.to_thread(self.path_for(key).is_file)

    async def stat(self, key: str) -> StoredObject:
        path = self.path_for(key)
        try:  # on the loop, as put's: one stat costs less than the hop to a thread and back
            size = os.stat(path).st_size
        except FileNotFoundError as exc:
            raise NotFound(f"image not found: {key!r}") from exc
        return StoredObject(key=key, size_bytes=size, content_type=content_type_for_key(key))

    async def iter_bytes(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        try:  # opened and first read in one trip to a thread: most images are one chunk
            file, chunk = await asyncio.to_thread(_open_and_read, path, chunk_size)
        except FileNotFoundError as exc:
            raise NotFound(f"image not found: {key!r}") from exc
        try:
            while chunk:
                yield chunk
                if len(chunk) < chunk_size:  # a buffered file reads short only at its end
                    break
                chunk = await asyncio.to_thread(file.read, chunk_size)
        finally:
            file.close()

    async def check(self) -> None:
        try:
            await asyncio.to_thread(self._probe_sync)
        except OSError as exc:
            raise StorageUnavailable(
                f"image directory {str(self._root)!r} is not writable: {exc.strerror or exc}"
            ) from exc

    # --- blocking helpers, run in worker threads ---

    def _put_sync(self, dest: Path, source: bytes | Path) -> bool:
        if _already_stored(dest, source):  # stored meanwhile by a concurrent put
            return False
        staged = self._stage_bytes(source) if isinstance(source, bytes) else _synced(source)
        try:
            _replace(staged, dest)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        return True

    def _stage_bytes(self, data: bytes) -> Path:
        try:  # the staging folder is made only when missing: no mkdir per image
            fd, name = tempfile.mkstemp(dir=self._staging, prefix=".put-", suffix=".part")
        except FileNotFoundError:
            self._staging.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self._staging, prefix=".put-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)

    def _probe_sync(self) -> None:
        """A real write: a byte written and synced in the staging folder, then removed."""
        self._staging.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._staging, prefix=".probe-")
        try:
            os.write(fd, b"\0")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)


def _already_stored(dest: str | Path, source: bytes | Path) -> bool:
    """Whether ``dest`` exists; if so a spooled ``source`` is deleted (the store owns it)."""
    if not os.path.isfile(dest):
        return False
    if isinstance(source, Path):
        source.unlink(missing_ok=True)
    return True


def _open_and_read(path: Path, size: int) -> tuple[BinaryIO, bytes]:
    """``path`` opened, and its first ``size`` bytes."""
    file = path.open("rb")
    try:
        return file, file.read(size)
    except BaseException:
        file.close()
        raise


def _synced(path: Path) -> Path:
    """Flush a spooled file to disk so the rename never exposes an empty file after a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _replace(staged: Path, dest: Path) -> None:
    """Move ``staged`` to ``dest`` atomically, making ``dest``'s folder on first use."""
    try:
        _move(staged, dest)
    except FileNotFoundError:
        if not staged.exists():
            raise
        dest.parent.mkdir(parents=True, exist_ok=True)
        _move(staged, dest)


def _move(staged: Path, dest: Path) -> None:
    """A rename, or a copy first if they are on different devices."""
    try:
        os.replace(staged, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_replace(staged, dest)


def _copy_replace(staged: Path, dest: Path) -> None:
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=".put-", suffix=".part")
    os.close(fd)
    try:
        shutil.copyfile(staged, name)
        os.replace(name, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    staged.unlink(missing_ok=True)
