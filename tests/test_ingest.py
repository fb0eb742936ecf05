"""ImageIngestor: verification with Pillow, real formats, content keys, data: URIs, dedupe."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import io
import struct
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imagegen import fetch
from imagegen.errors import ImageFetchError
from imagegen.fetch import MEMORY_BYTES, SafeFetcher
from imagegen.ingest import INLINE_BYTES, ImageIngestor, decode_data_uri, inspect_image
from imagegen.models import StoredImage
from imagegen.storage import LocalImageStore

FORMATS = [("PNG", "png", "image/png"), ("JPEG", "jpg", "image/jpeg"), ("GIF", "gif", "image/gif")]
FORMATS.append(("WEBP", "webp", "image/webp"))


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (7, 5), color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG that claims ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


async def resolve_public(host: str, port: int) -> Sequence[str]:
    return ["93.184.216.34"]


def make_ingestor(
    tmp_path: Path,
    bodies: dict[str, bytes] | None = None,
    *,
    max_bytes: int = 10_000_000,
    memory_bytes: int = MEMORY_BYTES,
) -> tuple[ImageIngestor, LocalImageStore]:
    bodies = bodies or {}

    def handler(request: httpx.Request) -> httpx.Response:
        body = bodies.get(request.url.path)
        if body is None:
            return httpx.Response(404)
        return httpx.Response(200, content=body, headers={"Content-Type": "image/jpeg"})

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    fetcher = SafeFetcher(
        client, allowed_hosts=(), max_bytes=max_bytes, timeout=5, resolver=resolve_public
    )
    store = LocalImageStore(tmp_path / "images")
    return ImageIngestor(store, fetcher, memory_bytes=memory_bytes), store


def stored_files(store: LocalImageStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file())


@pytest.mark.parametrize(("fmt", "ext", "content_type"), FORMATS)
async def test_ingest_records_the_real_format(
    tmp_path: Path, fmt: str, ext: str, content_type: str
) -> None:
    data = image_bytes(fmt)
    # The URL says .jpg and the server says image/jpeg: only the bytes count.
    ingestor, store = make_ingestor(tmp_path, {"/pbxt/out-0.jpg": data})
    url = "https://replicate.delivery/pbxt/out-0.jpg"
    stored = await ingestor.ingest(url)
    assert stored.key == f"{hashlib.sha256(data).hexdigest()}.{ext}"
    assert stored.content_type == content_type
    assert (stored.width, stored.height) == (7, 5)
    assert stored.size_bytes == len(data)
    assert stored.source_url == url
    assert store.path_for(stored.key).read_bytes() == data
    assert stored_files(store) == [store.path_for(stored.key)]


async def test_same_bytes_are_stored_once(tmp_path: Path) -> None:
    data = image_bytes()
    ingestor, store = make_ingestor(tmp_path, {"/a.png": data, "/b.png": data})
    first = await ingestor.ingest("https://replicate.delivery/a.png")
    second = await ingestor.ingest("https://pbxt.replicate.delivery/b.png")
    third = await ingestor.ingest_bytes(data)
    assert first.key == second.key == third.key
    assert stored_files(store) == [store.path_for(first.key)]


async def test_concurrent_ingests_of_the_same_image(tmp_path: Path) -> None:
    data = image_bytes("PNG", (64, 64))
    ingestor, store = make_ingestor(tmp_path, {f"/{i}.png": data for i in range(8)})
    urls = [f"https://replicate.delivery/{i}.png" for i in range(8)]
    results = await asyncio.gather(*(ingestor.ingest(url) for url in urls))
    assert len({r.key for r in results}) == 1
    assert stored_files(store) == [store.path_for(results[0].key)]


@pytest.mark.parametrize(
    "body",
    [b"<html>not an image</html>", b"", image_bytes()[:40], b"GIF89a" + b"\x00" * 10],
)
async def test_non_images_are_refused_and_not_kept(tmp_path: Path, body: bytes) -> None:
    ingestor, store = make_ingestor(tmp_path, {"/x.png": body})
    with pytest.raises(ImageFetchError, match="not a decodable image"):
        await ingestor.ingest("https://replicate.delivery/x.png")
    assert stored_files(store) == []


async def test_unsupported_format_is_refused(tmp_path: Path) -> None:
    ingestor, _ = make_ingestor(tmp_path, {"/x.bmp": image_bytes("BMP")})
    with pytest.raises(ImageFetchError, match="not a decodable image"):
        await ingestor.ingest("https://replicate.delivery/x.bmp")


async def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    ingestor, store = make_ingestor(tmp_path, {"/bomb.png": png_header_only(100_000, 100_000)})
    with pytest.raises(ImageFetchError, match="too large to decode safely"):
        await ingestor.ingest("https://replicate.delivery/bomb.png")
    assert stored_files(store) == []


def test_pixel_limit_is_enforced_below_pillows_warning() -> None:
    with pytest.raises(ImageFetchError, match="9000x8000 pixels"):
        inspect_image(png_header_only(9000, 8000))
    with pytest.raises(ImageFetchError, match="pixel limit"):
        inspect_image(image_bytes(size=(100, 100)), max_pixels=9999)
    assert inspect_image(image_bytes(size=(100, 100)), max_pixels=10_000).width == 100


async def test_a_download_that_fails_once_is_stored(tmp_path: Path) -> None:
    data, attempts = image_bytes(), []

    async def cut_short() -> AsyncIterator[bytes]:
        yield data[:20]
        raise httpx.ReadError("connection reset by peer")

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        if len(attempts) == 1:
            return httpx.Response(503, text="<html>503 Service Unavailable</html>")
        if len(attempts) == 2:
            return httpx.Response(200, content=cut_short())
        return httpx.Response(200, content=data)

    async def no_wait(seconds: float) -> None:
        pass

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    fetcher = SafeFetcher(
        client, allowed_hosts=(), max_bytes=10**6, timeout=5, resolver=resolve_public, sleep=no_wait
    )
    store = LocalImageStore(tmp_path / "images")
    stored = await ImageIngestor(store, fetcher).ingest("https://replicate.delivery/a.png")
    assert len(attempts) == 3
    assert stored.key == f"{hashlib.sha256(data).hexdigest()}.png"
    assert stored_files(store) == [store.path_for(stored.key)]  # no spool of the broken body


async def test_fetch_errors_pass_through(tmp_path: Path) -> None:
    ingestor, _ = make_ingestor(tmp_path)
    with pytest.raises(ImageFetchError, match="no longer available"):
        await ingestor.ingest("https://replicate.delivery/expired.png")
    with pytest.raises(ImageFetchError, match="host not allowed"):
        await ingestor.ingest("https://example.com/x.png")


# --- data: URIs and bytes ---------------------------------------------------------------


async def test_base64_data_uri(tmp_path: Path) -> None:
    data = image_bytes("WEBP")
    ingestor, store = make_ingestor(tmp_path)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    stored = await ingestor.ingest(uri)
    assert stored.content_type == "image/webp"
    assert stored.source_url is None
    assert store.path_for(stored.key).read_bytes() == data


async def test_percent_encoded_data_uri(tmp_path: Path) -> None:
    data = image_bytes("GIF")
    ingestor, _ = make_ingestor(tmp_path)
    stored = await ingestor.ingest("data:," + urllib.parse.quote_from_bytes(data))
    assert stored.content_type == "image/gif"
    assert stored.size_bytes == len(data)


def test_data_uri_variants() -> None:
    payload = b"\xff\xfe\x00hello"
    encoded = base64.b64encode(payload).decode()
    assert decode_data_uri(f"data:image/png;base64,{encoded}", 100) == payload
    assert decode_data_uri(f"DATA:image/png;BASE64,{encoded[:6]}\n{encoded[6:]}", 100) == payload
    assert decode_data_uri(f"data:;base64,{encoded.rstrip('=')}", 100) == payload
    urlsafe = base64.urlsafe_b64encode(b"\xfb\xff\xfe").decode()
    assert decode_data_uri(f"data:;base64,{urlsafe}", 100) == b"\xfb\xff\xfe"
    assert decode_data_uri("data:text/plain,a%20b", 100) == b"a b"


@pytest.mark.parametrize("uri", ["data:image/png;base64", "data:;base64,@@@@", "nodata:,x"])
def test_malformed_data_uris(uri: str) -> None:
    with pytest.raises(ImageFetchError, match="malformed"):
        decode_data_uri(uri, 100)


def test_data_uri_size_cap() -> None:
    big = base64.b64encode(b"x" * 101).decode()
    with pytest.raises(ImageFetchError, match="larger than 100 bytes"):
        decode_data_uri(f"data:;base64,{big}", 100)
    with pytest.raises(ImageFetchError, match="larger than 100 bytes"):
        decode_data_uri("data:," + "x" * 101, 100)
    assert len(decode_data_uri(f"data:;base64,{base64.b64encode(b'x' * 100).decode()}", 100)) == 100


async def test_ingest_bytes_checks_size_and_content(tmp_path: Path) -> None:
    ingestor, store = make_ingestor(tmp_path, max_bytes=50)
    with pytest.raises(ImageFetchError, match="larger than 50 bytes"):
        await ingestor.ingest_bytes(b"x" * 51)
    with pytest.raises(ImageFetchError, match="not a decodable image"):
        await ingestor.ingest_bytes(b"x" * 50)
    assert stored_files(store) == []


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
async def test_a_large_image_is_inspected_in_a_worker_thread(tmp_path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((400, 300), 90).convert("RGB").save(buffer, format=fmt, lossless=True)
    data = buffer.getvalue()
    assert len(data) > INLINE_BYTES
    ingestor, store = make_ingestor(tmp_path, {"/big": data})
    fetched = await ingestor.ingest("https://replicate.delivery/big")
    inline = await ingestor.ingest_bytes(data)
    assert fetched.key == inline.key
    assert (fetched.width, fetched.height, fetched.size_bytes) == (400, 300, len(data))
    assert stored_files(store) == [store.path_for(fetched.key)]
    assert list(store.staging_dir.iterdir()) == []


# --- end to end over a real socket ------------------------------------------------------


async def test_ingest_from_a_real_loopback_server(tmp_path: Path) -> None:
    data = image_bytes("PNG", (300, 200), "blue")

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode())
        for start in range(0, len(data), 100):
            writer.write(data[start : start + 100])
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(respond, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, httpx.AsyncClient() as client:
        fetcher = SafeFetcher(
            client, allowed_hosts=[f"http://127.0.0.1:{port}"], max_bytes=10**6, timeout=10
        )
        store = LocalImageStore(tmp_path / "images")
        stored = await ImageIngestor(store, fetcher).ingest(f"http://127.0.0.1:{port}/o.png")
    assert (stored.width, stored.height, stored.content_type) == (300, 200, "image/png")
    assert store.path_for(stored.key).read_bytes() == data
    assert list(store.staging_dir.iterdir()) == []


# --- small downloads in memory, large ones through a spool file --------------------------


async def test_a_small_download_reaches_the_disk_only_when_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_spool(directory: Path) -> tuple[int, str]:
        raise AssertionError("a small download needs no spool file")

    monkeypatch.setattr(fetch, "_new_spool_file", no_spool)
    staged: list[int] = []
    stage = LocalImageStore._stage_bytes

    def counting(self: LocalImageStore, data: bytes) -> Path:
        staged.append(len(data))
        return stage(self, data)

    monkeypatch.setattr(LocalImageStore, "_stage_bytes", counting)
    data = image_bytes("WEBP", (16, 16))
    ingestor, store = make_ingestor(tmp_path, {"/a.webp": data, "/b.webp": data})
    first = await ingestor.ingest("https://replicate.delivery/a.webp")
    assert staged == [len(data)], "a new image is written (and synced) once"
    second = await ingestor.ingest("https://replicate.delivery/b.webp")
    assert staged == [len(data)], "an image already stored is not written again"
    assert first == replace_url(second, first.source_url)
    assert first.key == f"{hashlib.sha256(data).hexdigest()}.webp"
    assert store.path_for(first.key).read_bytes() == data
    assert stored_files(store) == [store.path_for(first.key)]


def replace_url(image: StoredImage, url: str | None) -> StoredImage:
    return dataclasses.replace(image, source_url=url)


@pytest.mark.parametrize("memory_bytes", [0, 50])
async def test_a_download_over_memory_bytes_is_stored_from_its_spool_file(
    tmp_path: Path, memory_bytes: int
) -> None:
    data = image_bytes("PNG", (40, 30))
    assert len(data) > memory_bytes
    ingestor, store = make_ingestor(tmp_path, {"/a.png": data}, memory_bytes=memory_bytes)
    stored = await ingestor.ingest("https://replicate.delivery/a.png")
    again = await ingestor.ingest("https://replicate.delivery/a.png")
    assert stored.key == again.key == f"{hashlib.sha256(data).hexdigest()}.png"
    assert (stored.width, stored.height, stored.size_bytes) == (40, 30, len(data))
    assert store.path_for(stored.key).read_bytes() == data
    assert stored_files(store) == [store.path_for(stored.key)]
    assert list(store.staging_dir.iterdir()) == []


async def test_a_small_download_that_is_no_image_leaves_nothing(tmp_path: Path) -> None:
    ingestor, store = make_ingestor(tmp_path, {"/x.png": b"<html>no</html>"})
    with pytest.raises(ImageFetchError, match="not a decodable image"):
        await ingestor.ingest("https://replicate.delivery/x.png")
    assert stored_files(store) == []
