"""OpenAICompatProvider against the OpenAI double over real loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image
from tests.fakes.openai_double import Fault, OpenAIDouble
from tests.fakes.openai_fixtures import API_KEY, double_fixtures

from imagegen.errors import (
    DeadlineExceeded,
    ModelNotFound,
    PredictionFailed,
    UpstreamHTTPError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from imagegen.models import GenerationRequest
from imagegen.providers.base import GenerationContext, Provider
from imagegen.providers.openai_compat import OpenAICompatProvider, rules_for, size_for
from imagegen.providers.openai_compat.rules import batches
from imagegen.providers.openai_compat.wire import retry_after

openai_double, _reset_openai_double = double_fixtures()

FREE_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"


class RecordingSleep:
    """An injected ``sleep`` that records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


def make_provider(
    http: httpx.AsyncClient, base_url: str, sleep: RecordingSleep, **kwargs: Any
) -> OpenAICompatProvider:
    options: dict[str, Any] = {"api_key": API_KEY} | kwargs
    return OpenAICompatProvider(http, name="openai", base_url=base_url, sleep=sleep, **options)


@pytest.fixture
def provider(
    http: httpx.AsyncClient, openai_double: OpenAIDouble, sleep: RecordingSleep
) -> OpenAICompatProvider:
    return make_provider(http, openai_double.base_url, sleep)


def request(
    model: str = "dall-e-2", n: int = 1, size: tuple[int, int] = (512, 512), **kw: Any
) -> GenerationRequest:
    return GenerationRequest(
        model=model, prompt="an otter", num_images=n, width=size[0], height=size[1], **kw
    )


def context(seconds: float = 10.0) -> GenerationContext:
    return GenerationContext(deadline=asyncio.get_running_loop().time() + seconds)


def decode_data_uri(uri: str) -> tuple[str, Image.Image]:
    header, _, payload = uri.partition(",")
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    return header, image


def bodies(double: OpenAIDouble) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = double.stats()["requests"]
    return requests


# --- results -------------------------------------------------------------------------------------


async def test_url_results(
    http: httpx.AsyncClient, openai_double: OpenAIDouble, sleep: RecordingSleep
) -> None:
    provider = make_provider(http, openai_double.base_url + "/v1/", sleep, response_format="url")
    result = await provider.generate(request(n=2), context())
    assert result.requested == 2
    assert result.missing == 0
    for image in result.images:
        assert image.url.startswith(openai_double.base_url + "/files/")
        downloaded = Image.open(io.BytesIO((await http.get(image.url)).content))
        assert downloaded.size == (512, 512)
    assert bodies(openai_double) == [
        {
            "model": "dall-e-2",
            "prompt": "an otter",
            "n": 2,
            "size": "512x512",
            "response_format": "url",
        }
    ]


async def test_b64_results_become_png_data_uris(provider: OpenAICompatProvider) -> None:
    result = await provider.generate(request(size=(256, 256)), context())
    header, image = decode_data_uri(result.images[0].url)
    assert header == "data:image/png;base64"
    assert image.size == (256, 256)


async def test_gpt_image_never_gets_response_format_and_keeps_output_format(
    provider: OpenAICompatProvider, openai_double: OpenAIDouble
) -> None:
    generation = request("gpt-image-1", n=2, size=(1500, 1000), output_format="jpg")
    result = await provider.generate(generation, context())
    assert len(result.images) == 2
    header, image = decode_data_uri(result.images[0].url)
    assert (header, image.format, image.size) == ("data:image/jpeg;base64", "JPEG", (1536, 1024))
    [body] = bodies(openai_double)
    assert "response_format" not in body
    assert (body["output_format"], body["n"]) == ("jpeg", 2)


async def test_dall_e_3_fans_out_one_request_per_image(
    provider: OpenAICompatProvider, openai_double: OpenAIDouble
) -> None:
    result = await provider.generate(request("dall-e-3", n=3, size=(1024, 1024)), context())
    assert len(result.images) == 3
    assert openai_double.stats()["calls"] == {"dall-e-3": 3}
    assert [body["n"] for body in bodies(openai_double)] == [1, 1, 1]


async def test_dall_e_3_revised_prompts_are_kept_per_image(
    provider: OpenAICompatProvider,
) -> None:
    result = await provider.generate(request("dall-e-3", n=2, size=(1024, 1024)), context())
    expected = "A detailed, vivid illustration of: an otter"
    assert [image.revised_prompt for image in result.images] == [expected, expected]


async def test_models_that_do_not_revise_prompts_give_none(provider: OpenAICompatProvider) -> None:
    result = await provider.generate(request("dall-e-2", n=2), context())
    assert [image.revised_prompt for image in result.images] == [None, None]


async def test_more_than_ten_images_are_split_into_batches(
    provider: OpenAICompatProvider, openai_double: OpenAIDouble
) -> None:
    result = await provider.generate(request(n=13, size=(256, 256)), context())
    assert len(result.images) == 13
    assert sorted(body["n"] for body in bodies(openai_double)) == [3, 10]


async def test_free_size_model_gets_rounded_size_seed_and_negative_prompt(
    provider: OpenAICompatProvider, openai_double: OpenAIDouble
) -> None:
    generation = request(FREE_MODEL, size=(1000, 700), seed=42, negative_prompt="blurry")
    result = await provider.generate(generation, context())
    _, image = decode_data_uri(result.images[0].url)
    assert image.size == (1024, 704)
    [body] = bodies(openai_double)
    assert (body["size"], body["seed"], body["negative_prompt"]) == ("1024x704", 42, "blurry")


async def test_openai_models_never_get_seed_or_negative_prompt(
    provider: OpenAICompatProvider, openai_double: OpenAIDouble
) -> None:
    await provider.generate(request(seed=1, negative_prompt="blurry"), context())
    [body] = bodies(openai_double)
    assert "seed" not in body
    assert "negative_prompt" not in body


async def test_no_api_key_sends_no_authorization(
    http: httpx.AsyncClient, sleep: RecordingSleep
) -> None:
    with OpenAIDouble(api_key=None) as double:
        provider = make_provider(http, double.base_url, sleep, api_key=None)
        result = await provider.generate(request(FREE_MODEL), context())
    assert len(result.images) == 1


# --- size and batching rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "width", "height", "expected"),
    [
        ("dall-e-2", 512, 512, "512x512"),
        ("dall-e-2", 300, 280, "256x256"),
        ("dall-e-2", 2048, 1024, "1024x1024"),
        ("dall-e-3", 1024, 1024, "1024x1024"),
        ("dall-e-3", 1920, 1080, "1792x1024"),
        ("dall-e-3", 1024, 1536, "1024x1792"),
        ("dall-e-3", 300, 300, "1024x1024"),
        ("gpt-image-1", 1024, 1536, "1024x1536"),
        ("gpt-image-1", 1920, 1080, "1536x1024"),
        ("gpt-image-1.5", 768, 768, "1024x1024"),
        (FREE_MODEL, 1000, 700, "1024x704"),
        (FREE_MODEL, 100, 5000, "256x2048"),
        (FREE_MODEL, 512, 768, "512x768"),
        ("some/local-model", 31, 97, "256x256"),
    ],
)
def test_size_mapping(model: str, width: int, height: int, expected: str) -> None:
    assert size_for(rules_for(model), width, height) == expected


@pytest.mark.parametrize(
    ("model", "n", "expected"),
    [("dall-e-3", 3, [1, 1, 1]), ("dall-e-2", 10, [10]), ("gpt-image-1", 21, [10, 10, 1])],
)
def test_batching(model: str, n: int, expected: list[int]) -> None:
    assert batches(n, rules_for(model).max_n) == expected


# --- errors --------------------------------------------------------------------------------------


async def test_bad_key_is_401_with_the_upstream_message(
    http: httpx.AsyncClient, openai_double: OpenAIDouble, sleep: RecordingSleep
) -> None:
    provider = make_provider(http, openai_double.base_url, sleep, api_key="sk-wrong-000000000")
    with pytest.raises(UpstreamHTTPError) as info:
        await provider.generate(request(), context())
    assert info.value.status == 401
    assert info.value.provider == "openai"
    assert info.value.message.startswith("openai: Incorrect API key provided: ")
    assert info.value.title == "invalid_api_key"


@pytest.mark.parametrize(
    ("fault", "status", "title"),
    [
        (Fault("content_policy"), 400, "content_policy_violation"),
        (Fault("server_error"), 500, "server_error"),
        (Fault("server_error", status=503), 503, "server_error"),
    ],
)
async def test_http_errors_keep_status_and_are_not_retried(
    provider: OpenAICompatProvider,
    openai_double: OpenAIDouble,
    sleep: RecordingSleep,
    fault: Fault,
    status: int,
    title: str,
) -> None:
    openai_double.script(fault)
    with pytest.raises(UpstreamHTTPError) as info:
        await provider.generate(request(), context())
    assert type(info.value) is UpstreamHTTPError
    assert (info.value.status, info.value.title) == (status, title)
    assert info.value.message.startswith("openai: ")
    assert openai_double.stats()["total_calls"] == 1
    assert sleep.delays == []


async def test_unknown_model_is_model_not_found_naming_it(provider: OpenAICompatProvider) -> None:
    with pytest.raises(ModelNotFound) as info:
        await provider.generate(request("dall-e-9"), context())
    assert info.value.model == "dall-e-9"
    assert "'dall-e-9'" in info.value.message


async def test_malformed_reply_is_unavailable(
    provider: OpenAICompatProvider, openai_double: OpenAIDouble
) -> None:
    openai_double.script(Fault("malformed"))
    with pytest.raises(UpstreamUnavailable, match="malformed"):
        await provider.generate(request(), context())


async def test_empty_data_is_a_failure_not_a_success(
    provider: OpenAICompatProvider, openai_double: OpenAIDouble
) -> None:
    openai_double.script(Fault("empty"))
    with pytest.raises(PredictionFailed, match="no images"):
        await provider.generate(request(), context())


async def test_timeouts_are_unavailable_and_not_retried(
    openai_double: OpenAIDouble, sleep: RecordingSleep
) -> None:
    openai_double.script(Fault("slow", delay=1.0))
    async with httpx.AsyncClient(timeout=0.2) as http:
        provider = make_provider(http, openai_double.base_url, sleep)
        with pytest.raises(UpstreamUnavailable, match="ReadTimeout"):
            await provider.generate(request(), context())
    assert openai_double.stats()["total_calls"] == 1
    assert sleep.delays == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_retried_then_unavailable(
    http: httpx.AsyncClient, sleep: RecordingSleep
) -> None:
    provider = make_provider(http, f"http://127.0.0.1:{_closed_port()}", sleep, max_retries=2)
    with pytest.raises(UpstreamUnavailable, match="could not connect") as info:
        await provider.generate(request(), context())
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert sleep.delays == [1.0, 2.0]


async def test_connection_refused_then_success(sleep: RecordingSleep) -> None:
    calls = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=req)
        return httpx.Response(200, json={"created": 1, "data": [{"url": "https://x/1.png"}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        result = await make_provider(http, "https://up", sleep).generate(request(), context())
    assert [i.url for i in result.images] == ["https://x/1.png"]
    assert calls == 2


async def test_non_json_error_body_keeps_status_and_text(sleep: RecordingSleep) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(UpstreamHTTPError) as info:
            await make_provider(http, "https://up", sleep).generate(request(), context())
    assert info.value.status == 502
    assert info.value.message == "openai: <html>Bad Gateway</html>"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(httpx.Headers(headers)) == expected


# --- rate limits and deadlines -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected_delay"),
    [
        (Fault("rate_limit", retry_after=2), 2.0),
        (Fault("rate_limit", retry_after_ms=1500), 1.5),
        (Fault("rate_limit"), 1.0),  # no header: backoff
    ],
)
async def test_429_is_retried_after_retry_after(
    provider: OpenAICompatProvider,
    openai_double: OpenAIDouble,
    sleep: RecordingSleep,
    fault: Fault,
    expected_delay: float,
) -> None:
    openai_double.script(fault)
    result = await provider.generate(request(), context())
    assert len(result.images) == 1
    assert sleep.delays == [expected_delay]
    assert openai_double.stats()["total_calls"] == 2


async def test_429_that_outlasts_the_deadline_is_raised_at_once(
    provider: OpenAICompatProvider, openai_double: OpenAIDouble, sleep: RecordingSleep
) -> None:
    openai_double.script(Fault("rate_limit", retry_after=30))
    with pytest.raises(UpstreamRateLimited) as info:
        await provider.generate(request(), context(seconds=5))
    assert (info.value.status, info.value.retry_after) == (429, 30.0)
    assert info.value.title == "rate_limit_exceeded"
    assert sleep.delays == []


async def test_429_retries_are_bounded(
    provider: OpenAICompatProvider, openai_double: OpenAIDouble, sleep: RecordingSleep
) -> None:
    openai_double.script(Fault("rate_limit", retry_after=1, times=10))
    with pytest.raises(UpstreamRateLimited):
        await provider.generate(request(), context())
    assert sleep.delays == [1.0, 1.0, 1.0]
    assert openai_double.stats()["total_calls"] == 4


async def test_deadline_cancels_the_request(
    provider: OpenAICompatProvider, openai_double: OpenAIDouble
) -> None:
    openai_double.script(Fault("slow", delay=1.0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DeadlineExceeded):
        await provider.generate(request(), context(seconds=0.2))
    assert loop.time() - started < 0.8


async def test_deadline_already_passed(provider: OpenAICompatProvider) -> None:
    with pytest.raises(DeadlineExceeded):
        await provider.generate(request(), context(seconds=-1))


# --- partial fan-out, resume, cancel -------------------------------------------------------------


async def test_partial_fan_out_returns_what_arrived(
    provider: OpenAICompatProvider, openai_double: OpenAIDouble
) -> None:
    openai_double.script(Fault("content_policy"))
    result = await provider.generate(request("dall-e-3", n=3, size=(1024, 1024)), context())
    assert (len(result.images), result.requested, result.missing) == (2, 3, 1)


async def test_fan_out_with_every_request_failing_raises(
    provider: OpenAICompatProvider, openai_double: OpenAIDouble
) -> None:
    openai_double.script(Fault("content_policy", times=2))
    with pytest.raises(UpstreamHTTPError) as info:
        await provider.generate(request("dall-e-3", n=2, size=(1024, 1024)), context())
    assert info.value.status == 400


async def test_resume_is_not_possible_and_cancel_is_a_no_op(
    provider: OpenAICompatProvider,
) -> None:
    with pytest.raises(PredictionFailed, match="cannot be resumed"):
        await provider.resume(request(), (), context())
    await provider.cancel(())
    await provider.aclose()


def test_provider_satisfies_the_protocol(provider: OpenAICompatProvider) -> None:
    typed: Provider = provider
    assert typed.name == "openai"
