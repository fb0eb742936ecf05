"""LocalImageStore and the key helpers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

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

DATA = b"stored image bytes"
DIGEST = hashlib.sha256(DATA).hexdigest()
KEY = f"{DIGEST}.png"


@pytest.fixture
def store(tmp_path: Path) -> LocalImageStore:
    return LocalImageStore(tmp_path / "images")


def staged(store: LocalImageStore, data: bytes = DATA) -> Path:
    store.staging_dir.mkdir(parents=True, exist_ok=True)
    path = store.staging_dir / "download.part"
    path.write_bytes(data)
    return path


async def read_all(store: LocalImageStore, key: str, chunk_size: int = 4) -> bytes:
    return b"".join([chunk async for chunk in store.iter_bytes(key, chunk_size)])


def leftovers(store: LocalImageStore) -> list[Path]:
    return list(store.staging_dir.iterdir()) if store.staging_dir.exists() else []


def test_local_store_implements_the_protocol(store: LocalImageStore) -> None:
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
async def test_malformed_keys_never_reach_the_disk(store: LocalImageStore, key: str) -> None:
    assert not is_valid_key(key)
    assert not await store.exists(key)
    with pytest.raises(NotFound):
        await store.stat(key)
    with pytest.raises(NotFound):
        await read_all(store, key)
    with pytest.raises(ValueError):
        await store.put(key, DATA, "image/png")


async def test_put_bytes_is_sharded_and_readable(store: LocalImageStore) -> None:
    assert await store.put(KEY, DATA, "image/png") is True
    path = store.root / DIGEST[:2] / DIGEST[2:4] / KEY
    assert path.read_bytes() == DATA
    assert store.path_for(KEY) == path
    assert await store.exists(KEY)
    stored = await store.stat(KEY)
    assert (stored.size_bytes, stored.content_type, stored.etag) == (
        len(DATA),
        "image/png",
        f'"{DIGEST}"',
    )
    assert await read_all(store, KEY) == DATA
    assert leftovers(store) == []


async def test_put_path_moves_the_spool_file_in(store: LocalImageStore) -> None:
    spool = staged(store)
    assert await store.put(KEY, spool, "image/png") is True
    assert not spool.exists()
    assert await read_all(store, KEY) == DATA


async def test_put_is_idempotent(store: LocalImageStore) -> None:
    assert await store.put(KEY, DATA, "image/png") is True
    before = store.path_for(KEY).stat().st_mtime_ns
    assert await store.put(KEY, DATA, "image/png") is False
    spool = staged(store)
    assert await store.put(KEY, spool, "image/png") is False
    assert not spool.exists(), "a duplicate spool file is discarded"
    assert store.path_for(KEY).stat().st_mtime_ns == before
    assert leftovers(store) == []


async def test_content_type_must_match_the_key(store: LocalImageStore) -> None:
    with pytest.raises(ValueError, match="does not match"):
        await store.put(KEY, DATA, "image/jpeg")


async def test_missing_key_is_not_found(store: LocalImageStore) -> None:
    assert not await store.exists(KEY)
    with pytest.raises(NotFound):
        await store.stat(KEY)
    with pytest.raises(NotFound):
        await read_all(store, KEY)


async def test_unread_iterator_holds_nothing_open(store: LocalImageStore) -> None:
    await store.put(KEY, DATA, "image/png")
    chunks = store.iter_bytes(KEY, 4)
    assert await anext(chunks) == DATA[:4]
    await chunks.aclose()  # must close the file; a never-started iterator opens nothing


async def test_check_creates_the_directories(store: LocalImageStore) -> None:
    await store.check()
    assert store.staging_dir.is_dir()
    assert leftovers(store) == []


async def test_check_fails_when_the_directory_is_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the image directory should be")
    with pytest.raises(StorageUnavailable, match="not writable"):
        await LocalImageStore(blocker).check()
