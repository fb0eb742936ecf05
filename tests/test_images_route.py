"""GET/HEAD /images/{key}: headers, conditional requests, and nothing outside the store."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from imagegen.api.routes import images
from imagegen.errors import ConfigurationError
from imagegen.storage import LocalImageStore, StoredObject

DATA = bytes(range(256)) * 1000
DIGEST = hashlib.sha256(DATA).hexdigest()
KEY = f"{DIGEST}.webp"


class SpyStore(LocalImageStore):
    """Records every key the route asks the store about."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.asked: list[str] = []

    async def stat(self, key: str) -> StoredObject:
        self.asked.append(key)
        return await super().stat(key)


@pytest.fixture
async def store(tmp_path: Path) -> SpyStore:
    (tmp_path / "secret.txt").write_text("outside the store")
    store = SpyStore(tmp_path / "images")
    await store.put(KEY, DATA, "image/webp")
    return store


@pytest.fixture
async def client(store: SpyStore) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(images.router)
    app.state.image_store = store
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def assert_cache_headers(response: httpx.Response) -> None:
    assert response.headers["etag"] == f'"{DIGEST}"'
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_get_streams_the_image(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/images/{KEY}")
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert_cache_headers(response)


async def test_head_has_the_headers_and_no_body(client: httpx.AsyncClient) -> None:
    response = await client.head(f"/images/{KEY}")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["content-length"] == str(len(DATA))
    assert_cache_headers(response)


@pytest.mark.parametrize(
    "if_none_match", [f'"{DIGEST}"', f'W/"{DIGEST}"', f'"other", "{DIGEST}"', "*"]
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_matching_etag_is_not_modified(
    client: httpx.AsyncClient, method: str, if_none_match: str
) -> None:
    response = await client.request(
        method, f"/images/{KEY}", headers={"If-None-Match": if_none_match}
    )
    assert response.status_code == 304
    assert response.content == b""
    assert_cache_headers(response)


async def test_other_etag_gets_the_image(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/images/{KEY}", headers={"If-None-Match": '"stale"'})
    assert response.status_code == 200
    assert response.content == DATA


async def test_unknown_key_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/images/{'0' * 64}.png")
    assert response.status_code == 404
    assert response.json() == {"error": "image not found"}
    assert "cache-control" not in response.headers


@pytest.mark.parametrize(
    "raw_path",
    [
        "/images/..%2F..%2Fsecret.txt",
        "/images/..%2f..%2f..%2fetc%2fpasswd",
        "/images/%2e%2e/%2e%2e/secret.txt",
        "/images/%2Fetc%2Fpasswd",
        "/images//etc/passwd",
        f"/images/{KEY}/..%2F..%2Fsecret.txt",
        f"/images/{KEY.upper()}",
        f"/images/{DIGEST}.exe",
        f"/images/{DIGEST}",
        f"/images/{DIGEST[:2]}/{DIGEST[2:4]}/{KEY}",
        "/images/tmp",
        "/images/secret.txt",
        f"/images/{KEY}%00.png",
    ],
)
async def test_anything_but_a_valid_key_is_a_404(
    client: httpx.AsyncClient, store: SpyStore, raw_path: str
) -> None:
    request = client.build_request("GET", "http://test")
    request.url = request.url.copy_with(raw_path=raw_path.encode())
    response = await client.send(request)
    assert response.status_code == 404
    assert response.json() == {"error": "image not found"}
    assert store.asked == [], "an invalid key must never reach the store"


async def test_missing_store_is_a_configuration_error(tmp_path: Path) -> None:
    app = FastAPI()
    app.include_router(images.router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(ConfigurationError):
            await client.get(f"/images/{KEY}")


class RedirectingSpyStore(SpyStore):
    """A store that hands out direct links (as S3 does with presigned redirects on)."""

    def __init__(self, root: Path, link: str | None) -> None:
        super().__init__(root)
        self.link = link

    async def redirect_url(self, key: str) -> str | None:
        return None if self.link is None else f"{self.link}/{key}?signature=abc"


async def redirecting_client(store: RedirectingSpyStore) -> httpx.AsyncClient:
    await store.put(KEY, DATA, "image/webp")
    app = FastAPI()
    app.include_router(images.router)
    app.state.image_store = store
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_redirecting_store_answers_get_with_a_307(tmp_path: Path) -> None:
    store = RedirectingSpyStore(tmp_path / "images", "https://bucket.example")
    async with await redirecting_client(store) as client:
        response = await client.get(f"/images/{KEY}")
        assert response.status_code == 307
        assert response.headers["location"] == f"https://bucket.example/{KEY}?signature=abc"
        assert response.headers["cache-control"] == "no-store"
        assert response.content == b""

        head = await client.head(f"/images/{KEY}")
        assert head.status_code == 200, "HEAD stays here: a presigned GET URL cannot answer it"
        assert head.headers["content-length"] == str(len(DATA))
        assert_cache_headers(head)

        cached = await client.get(f"/images/{KEY}", headers={"If-None-Match": f'"{DIGEST}"'})
        assert cached.status_code == 304

        missing = await client.get(f"/images/{'0' * 64}.png")
        assert missing.status_code == 404, "only a stored key is redirected"


async def test_a_store_that_declines_to_redirect_streams(tmp_path: Path) -> None:
    store = RedirectingSpyStore(tmp_path / "images", None)
    async with await redirecting_client(store) as client:
        response = await client.get(f"/images/{KEY}")
    assert response.status_code == 200
    assert response.content == DATA


async def test_an_image_larger_than_a_chunk_is_streamed_whole(
    store: SpyStore, client: httpx.AsyncClient
) -> None:
    data = bytes(range(256)) * (images.BUFFERED_BYTES // 256 + 7)
    key = f"{hashlib.sha256(data).hexdigest()}.webp"
    await store.put(key, data, "image/webp")
    response = await client.get(f"/images/{key}")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
