"""An edit on an OpenAI-compatible upstream: OpenAI's multipart ``/v1/images/edits`` request,
to the OpenAI double, which opens what it receives."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests.fakes.images import make_image
from tests.fakes.openai_fixtures import API_KEY, double_fixtures

from imagegen.errors import ConfigurationError, UpstreamHTTPError
from imagegen.models import GenerationRequest, StoredImage
from imagegen.providers.base import GenerationContext
from imagegen.providers.openai_compat import OpenAICompatProvider
from imagegen.storage.base import make_key
from imagegen.storage.local import LocalImageStore

openai_double, _reset_openai_double = double_fixtures()


@pytest.fixture
async def store(tmp_path: Path) -> LocalImageStore:
    return LocalImageStore(tmp_path / "images")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def put(store: LocalImageStore, width: int, height: int, color=(10, 20, 30)) -> StoredImage:
    data = make_image(width, height, "png", color)
    key = make_key(hashlib.sha256(data).hexdigest(), "png")
    await store.put(key, data, "image/png")
    return StoredImage(key, "image/png", width, height, len(data))


def edit(model: str, *images: StoredImage, mask: StoredImage | None = None, n: int = 1):
    return GenerationRequest(
        model=model,
        prompt="add a red hat",
        num_images=n,
        width=1024,
        height=1024,
        images=images,
        mask=mask,
    )


def context() -> GenerationContext:
    return GenerationContext(deadline=asyncio.get_running_loop().time() + 10)


async def test_an_edit_is_openais_multipart_request(openai_double, http, store) -> None:
    provider = OpenAICompatProvider(
        http, name="openai", base_url=openai_double.base_url, api_key=API_KEY, images=store
    )
    image = await put(store, 256, 256)
    mask = await put(store, 256, 256, (255, 255, 255))
    result = await provider.generate(edit("dall-e-2", image, mask=mask, n=2), context())
    assert len(result.images) == 2
    (sent,) = openai_double.stats()["requests"]
    assert sent["endpoint"] == "edits"
    assert sent["image_sizes"] == [[256, 256]]
    assert sent["mask_size"] == [256, 256]
    assert sent["mask_transparent"] == 1.0  # all white: all clear, OpenAI's way
    assert (sent["model"], sent["prompt"], sent["n"], sent["size"]) == (
        "dall-e-2",
        "add a red hat",
        "2",
        "1024x1024",
    )


async def test_several_images_go_as_image_array(openai_double, http, store) -> None:
    provider = OpenAICompatProvider(
        http, name="openai", base_url=openai_double.base_url, api_key=API_KEY, images=store
    )
    first, second = await put(store, 64, 64), await put(store, 32, 48, (1, 2, 3))
    await provider.generate(edit("gpt-image-1", first, second), context())
    (sent,) = openai_double.stats()["requests"]
    assert sent["image_sizes"] == [[64, 64], [32, 48]]
    assert "response_format" not in sent  # GPT image models refuse it, edits too


async def test_the_upstreams_refusal_keeps_its_status(openai_double, http, store) -> None:
    provider = OpenAICompatProvider(
        http, name="openai", base_url=openai_double.base_url, api_key=API_KEY, images=store
    )
    with pytest.raises(UpstreamHTTPError) as caught:
        await provider.generate(edit("dall-e-3", await put(store, 64, 64)), context())
    assert caught.value.status == 400
    assert "does not support image edits" in caught.value.message


async def test_without_an_image_store_an_edit_is_a_configuration_error(
    openai_double, http, store
) -> None:
    provider = OpenAICompatProvider(
        http, name="openai", base_url=openai_double.base_url, api_key=API_KEY
    )
    with pytest.raises(ConfigurationError):
        await provider.generate(edit("dall-e-2", await put(store, 64, 64)), context())
