"""The ImageStore contract, run against every implementation (local disk, S3 on SeaweedFS),
plus what is particular to the local store, and the key helpers."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.seaweedfs import SeaweedFS

from imagegen.errors import NotFound, StorageUnavailable
from imagegen.storage import (
    ImageStore,
    LocalImageStore,
    content_type_for_key,
    etag_for_key,
    image_url,
    is_valid_key,
    make_key,
)
from imagegen.storage.location import S3Location
from imagegen.storage.s3 import S3ImageStore
from imagegen.storage.s3_config import S3Config

DATA = b"stored image bytes"
DIGEST = hashlib.sha256(DATA).hexdigest()
KEY = f"{DIGEST}.png"


@pytest.fixture
def local_store(tmp_path: Path) -> LocalImageStore:
    return LocalImageStore(tmp_path / "images")


@pytest.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, s3_prefix: str
) -> AsyncIterator[ImageStore]:
    """Every implementation of the protocol: the contract tests below run against each."""
    if request.param == "local":
        yield LocalImageStore(tmp_path / "images")
        return
    seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
    async with httpx.AsyncClient() as http:
        yield S3ImageStore(
            s3_config(seaweedfs, s3_prefix), http=http, staging_dir=tmp_path / "staging"
        )


def s3_config(seaweedfs: SeaweedFS, prefix: str, **options: Any) -> S3Config:
    location = S3Location(bucket=seaweedfs.bucket, prefix=prefix)
    return S3Config.from_environment(
        location, seaweedfs.env, endpoint_url=seaweedfs.endpoint_url, **options
    )


def staged(store: ImageStore, data: bytes = DATA) -> Path:
    store.staging_dir.mkdir(parents=True, exist_ok=True)
    path = store.staging_dir / "download.part"
    path.write_bytes(data)
    return path


async def read_all(store: ImageStore, key: str, chunk_size: int = 4) -> bytes:
    return b"".join([chunk async for chunk in store.iter_bytes(key, chunk_size)])


def leftovers(store: ImageStore) -> list[Path]:
    return list(store.staging_dir.iterdir()) if store.staging_dir.exists() else []


def test_store_implements_the_protocol(store: ImageStore) -> None:
    assert isinstance(store, ImageStore)


def test_key_helpers() -> None:
    assert make_key(DIGEST.upper(), "png") == KEY
    assert content_type_for_key(KEY) == "image/png"
    assert content_type_for_key(f"{DIGEST}.jpg") == "image/jpeg"
    assert etag_for_key(KEY) == f'"{DIGEST}"'
    assert image_url(KEY, "https://img.example.com/") == f"https://img.example.com/images/{KEY}"
    with pytest.raises(ValueError):
        make_key("abc", "png")
    with pytest.raises(ValueError):
        make_key(DIGEST, "tiff")


@pytest.mark.parametrize(
    "key",
    [
        "",
        DIGEST,
        f"{DIGEST}.PNG",
        f"{DIGEST.upper()}.png",
        f"{DIGEST}.jpeg",
        f"{DIGEST}.png/",
        f"{DIGEST}.png\n",
        f"../{DIGEST}.png",
        f"/{DIGEST}.png",
        "../../etc/passwd",
        f"{DIGEST[:-1]}.png",
    ],
)
async def test_malformed_keys_never_reach_the_backend(store: ImageStore, key: str) -> None:
    assert not is_valid_key(key)
    assert not await store.exists(key)
    with pytest.raises(NotFound):
        await store.stat(key)
    with pytest.raises(NotFound):
        await read_all(store, key)
    with pytest.raises(ValueError):
        await store.put(key, DATA, "image/png")


async def test_put_bytes_is_readable(store: ImageStore) -> None:
    assert await store.put(KEY, DATA, "image/png") is True
    assert await store.exists(KEY)
    stored = await store.stat(KEY)
    assert (stored.size_bytes, stored.content_type, stored.etag) == (
        len(DATA),
        "image/png",
        f'"{DIGEST}"',
    )
    assert await read_all(store, KEY) == DATA
    assert leftovers(store) == []


async def test_local_store_shards_by_key(local_store: LocalImageStore) -> None:
    await local_store.put(KEY, DATA, "image/png")
    path = local_store.root / DIGEST[:2] / DIGEST[2:4] / KEY
    assert path.read_bytes() == DATA
    assert local_store.path_for(KEY) == path


async def test_large_images_stream_in_chunks(store: ImageStore) -> None:
    data = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MB, not a multiple of the chunk size
    key = make_key(hashlib.sha256(data).hexdigest(), "webp")
    assert await store.put(key, staged(store, data), "image/webp") is True
    chunks = [chunk async for chunk in store.iter_bytes(key, 256 * 1024)]
    assert len(chunks) > 1
    assert all(len(chunk) <= len(data) // 2 for chunk in chunks)
    assert b"".join(chunks) == data
    assert (await store.stat(key)).size_bytes == len(data)


async def test_put_path_takes_the_spool_file_over(store: ImageStore) -> None:
    spool = staged(store)
    assert await store.put(KEY, spool, "image/png") is True
    assert not spool.exists()
    assert await read_all(store, KEY) == DATA


async def test_put_is_idempotent(store: ImageStore) -> None:
    """A key already stored is never written again: different bytes under it (which a
    content-addressed caller never sends) prove that nothing was uploaded."""
    assert await store.put(KEY, DATA, "image/png") is True
    assert await store.put(KEY, b"other bytes", "image/png") is False
    spool = staged(store, b"other spooled bytes")
    assert await store.put(KEY, spool, "image/png") is False
    assert not spool.exists(), "a duplicate spool file is discarded"
    assert await read_all(store, KEY) == DATA
    assert leftovers(store) == []


async def test_local_put_keeps_the_existing_file(local_store: LocalImageStore) -> None:
    assert await local_store.put(KEY, DATA, "image/png") is True
    before = local_store.path_for(KEY).stat().st_mtime_ns
    assert await local_store.put(KEY, DATA, "image/png") is False
    assert local_store.path_for(KEY).stat().st_mtime_ns == before


async def test_content_type_must_match_the_key(store: ImageStore) -> None:
    with pytest.raises(ValueError, match="does not match"):
        await store.put(KEY, DATA, "image/jpeg")


async def test_missing_key_is_not_found(store: ImageStore) -> None:
    assert not await store.exists(KEY)
    with pytest.raises(NotFound):
        await store.stat(KEY)
    with pytest.raises(NotFound):
        await read_all(store, KEY)


async def test_unread_iterator_holds_nothing_open(store: ImageStore) -> None:
    await store.put(KEY, DATA, "image/png")
    chunks = store.iter_bytes(KEY, 4)
    first = await anext(chunks)
    assert first
    assert DATA.startswith(first)
    await chunks.aclose()  # must release the file or stream; a never-started one opens nothing


async def test_check_passes_on_a_usable_store(store: ImageStore) -> None:
    await store.check()
    await store.check()
    assert leftovers(store) == []


async def test_local_check_creates_the_directories(local_store: LocalImageStore) -> None:
    await local_store.check()
    assert local_store.staging_dir.is_dir()


async def test_check_fails_when_the_directory_is_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the image directory should be")
    with pytest.raises(StorageUnavailable, match="not writable"):
        await LocalImageStore(blocker).check()


@pytest.mark.parametrize("size", [0, 1, 4, 8, 9])
async def test_local_reads_end_at_the_end_of_the_file(tmp_path: Path, size: int) -> None:
    store = LocalImageStore(tmp_path / "images")
    data = bytes(range(size))
    key = make_key(hashlib.sha256(data).hexdigest(), "webp")
    await store.put(key, data, "image/webp")
    chunks = [chunk async for chunk in store.iter_bytes(key, 4)]
    assert b"".join(chunks) == data
    assert all(chunks)
    assert all(len(chunk) <= 4 for chunk in chunks)
