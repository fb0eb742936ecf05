"""Input images: read from uploads, data URLs and https URLs, verified, checked together, and
stored content-addressed only when every one of them is good."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
from PIL import Image
from tests.fakes.images import make_image

from imagegen.errors import InvalidRequest
from imagegen.fetch import SafeFetcher
from imagegen.inputs import InputImages, InputReader, InputSource
from imagegen.netpolicy import AnyPublicHost
from imagegen.storage.local import LocalImageStore

PUBLIC = "93.184.216.34"
PNG = make_image(64, 48, "png")


def data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def gif(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height)).save(out, format="GIF")
    return out.getvalue()


class Web:
    """The internet as the fetcher sees it: one image per path, and where names resolve."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"/cat.png": PNG, "/huge.png": PNG + bytes(200_000)}
        self.addresses: dict[str, list[str]] = {"images.example.com": [PUBLIC]}
        self.requests: list[httpx.Request] = []

    async def resolve(self, host: str, port: int) -> Sequence[str]:
        if host not in self.addresses:
            raise OSError("no such host")
        return self.addresses[host]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = self.files.get(request.url.path)
        return httpx.Response(404) if body is None else httpx.Response(200, content=body)


@pytest.fixture
def web() -> Web:
    return Web()


@pytest.fixture
async def images(tmp_path: Path, web: Web) -> AsyncIterator[InputImages]:
    store = LocalImageStore(tmp_path / "images")
    policy = AnyPublicHost.of("http://127.0.0.1:8765")
    async with httpx.AsyncClient(transport=httpx.MockTransport(web.handle)) as http:
        fetcher = SafeFetcher(
            http, allowed_hosts=policy, max_bytes=100_000, timeout=5, resolver=web.resolve
        )
        reader = InputReader(
            fetcher,
            staging_dir=store.staging_dir,
            max_bytes=100_000,
            max_pixels=1000 * 1000,
            trusted=policy.trusted,
        )
        yield InputImages(reader, store, max_images=3)


def stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "images"
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]


async def test_a_data_url_is_verified_and_stored_by_content(images: InputImages, tmp_path) -> None:
    (image,), mask = await images.prepare([InputSource("image", text=data_url(PNG))])
    assert mask is None
    assert (image.width, image.height, image.content_type) == (64, 48, "image/png")
    assert image.key.endswith(".png")
    assert image.size_bytes == len(PNG)
    assert image.source_url is None
    again, _ = await images.prepare([InputSource("image", data=PNG)])
    assert again[0].key == image.key
    assert len(stored_files(tmp_path)) == 1  # the same image twice is stored once


async def test_an_https_url_is_downloaded_from_a_public_host(images: InputImages, web) -> None:
    url = "https://images.example.com/cat.png"
    (image,), _ = await images.prepare([InputSource("image", text=url)])
    assert image.source_url == url
    assert (image.width, image.height) == (64, 48)
    assert web.requests[0].url.host == PUBLIC  # pinned to the checked address


async def test_image_and_mask_of_the_same_size(images: InputImages) -> None:
    mask_bytes = make_image(64, 48, "png", (255, 255, 255))
    (image,), mask = await images.prepare(
        [InputSource("image", data=PNG)], InputSource("mask", data=mask_bytes)
    )
    assert mask is not None
    assert (mask.width, mask.height) == (image.width, image.height)


@pytest.mark.parametrize(
    ("sources", "mask", "field", "words"),
    [
        ([InputSource("image", data=b"<html>no</html>")], None, "image", "not a decodable image"),
        ([InputSource("image", data=gif(8, 8))], None, "image", "PNG, JPEG or WebP"),
        ([InputSource("image", data=make_image(1001, 1000))], None, "image", "pixel limit"),
        ([InputSource("image", data=PNG + bytes(100_000))], None, "image", "larger than"),
        ([InputSource("image", text="data:image/png;base64,!!!")], None, "image", "base64"),
        ([InputSource("image", text="ftp://x/y.png")], None, "image", "https URL"),
        ([InputSource("image", text="http://images.example.com/cat.png")], None, "image", "https"),
        ([InputSource("image", text="https://nowhere.example/x.png")], None, "image", "resolve"),
        ([InputSource("image", text="https://images.example.com/gone.png")], None, "image", "404"),
        ([InputSource("image", text="https://127.0.0.1/cat.png")], None, "image", "private"),
        (
            [InputSource("image", text="https://images.example.com/huge.png")],
            None,
            "image",
            "larger",
        ),
        (
            [InputSource("image", data=PNG)],
            InputSource("mask", data=make_image(32, 32)),
            "mask",
            "size of the image (64x48)",
        ),
        ([InputSource("image", data=PNG)], InputSource("mask", data=b"x"), "mask", "decodable"),
        ([], InputSource("mask", data=PNG), "mask", "needs an image"),
        ([InputSource("image", data=PNG)] * 4, None, "image", "at most 3"),
        (
            [InputSource("image[0]", data=PNG), InputSource("image[1]", data=b"x")],
            None,
            "image[1]",
            "decodable",
        ),
    ],
    ids=[
        "not-an-image",
        "gif",
        "too-many-pixels",
        "too-large",
        "bad-base64",
        "not-https",
        "plain-http-public",
        "unresolvable",
        "not-found",
        "private-address",
        "url-too-large",
        "mask-size",
        "mask-not-an-image",
        "mask-alone",
        "too-many-images",
        "second-image",
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_nothing_is_stored(
    images: InputImages, tmp_path: Path, sources, mask, field: str, words: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await images.prepare(sources, mask)
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")
    assert words in caught.value.message
    assert stored_files(tmp_path) == []
    assert not any((tmp_path / "images").rglob(".fetch-*"))  # no spool left behind


async def test_a_configured_host_may_be_private_and_plain_http(
    images: InputImages, web: Web
) -> None:
    (image,), _ = await images.prepare([InputSource("image", text="http://127.0.0.1:8765/cat.png")])
    assert image.width == 64
    with pytest.raises(InvalidRequest, match="private"):  # its other ports stay closed
        await images.prepare([InputSource("image", text="https://127.0.0.1:8766/cat.png")])
