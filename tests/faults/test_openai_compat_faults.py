"""The fault matrix for the OpenAI-compatible upstream, at the provider level.

The OpenAI-compatible provider is not behind an HTTP route of its own yet, so its rows drive
``OpenAICompatProvider.generate`` against the OpenAI double over loopback, with real sleeps and a
real deadline. Each row asserts the error type and words (or the images), that the call ended
within the deadline, and how many requests reached the upstream: a synchronous image API bills
every request that succeeds, so one that may have run is never sent again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from tests.fakes.openai_double import Fault, OpenAIDouble
from tests.fakes.openai_fixtures import API_KEY, double_fixtures
from tests.support.imagegen_process import free_port

from imagegen.errors import (
    DeadlineExceeded,
    ImagegenError,
    PredictionFailed,
    UpstreamHTTPError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from imagegen.models import GenerationRequest
from imagegen.providers.base import GenerationContext
from imagegen.providers.openai_compat import OpenAICompatProvider

openai_double, _reset_openai_double = double_fixtures()

DEADLINE = 2.0
SLACK = 1.0


@dataclass(frozen=True)
class Row:
    id: str
    faults: tuple[Fault, ...]
    error: type[ImagegenError] | None  # None: images come back
    words: str = ""
    calls: int = 1  # requests that reached the upstream, exactly
    model: str = "dall-e-2"
    n: int = 1
    images: int = 1
    status: int | None = None  # for UpstreamHTTPError
    refused: bool = False  # the upstream's port is closed
    retry_after: float | None = None  # for UpstreamRateLimited: what a client is told
    absent: str | None = None  # a text the error must not contain


ROWS = [
    Row("ok", (), None),
    Row("429-retried", (Fault("rate_limit", retry_after=0.2),), None, calls=2),
    Row(
        "429-past-deadline",
        (Fault("rate_limit", retry_after=3600),),
        UpstreamRateLimited,
        "Rate limit",
    ),
    *[
        Row(
            f"{status}-not-retried",
            (Fault("server_error", status=status),),
            UpstreamHTTPError,
            "The server had an error",
            status=status,
        )
        for status in (500, 502, 503)
    ],
    Row(
        "content-policy",
        (Fault("content_policy"),),
        UpstreamHTTPError,
        "safety system",
        status=400,
    ),
    Row(
        "slower-than-deadline",
        (Fault("slow", delay=DEADLINE + 5),),
        DeadlineExceeded,
        "deadline passed",
    ),
    Row("empty-data", (Fault("empty"),), PredictionFailed, "no images"),
    Row("malformed-json", (Fault("malformed"),), UpstreamUnavailable, "malformed"),
    Row(
        "one-of-two-refused",
        (Fault("content_policy"),),
        None,
        model="dall-e-3",
        n=2,
        images=1,
        calls=2,
    ),
    # --- a hostile upstream --------------------------------------------------------------------
    Row(
        "oversize-reply",
        (Fault("oversize", size=100_000_000),),
        UpstreamUnavailable,
        "IMAGEGEN_UPSTREAM_MAX_RESPONSE_BYTES",
    ),
    Row(
        "echoes-the-key",
        (Fault("echo_key"),),
        UpstreamHTTPError,
        "[redacted]",
        status=401,
        absent=API_KEY,
    ),
    *[
        Row(  # clamped to 60 s: still past the deadline, so not waited for
            f"429-retry-after-{name}",
            (Fault("rate_limit", retry_after_raw=value),),
            UpstreamRateLimited,
            "Rate limit",
            retry_after=60.0,
        )
        for name, value in (
            ("huge", "99999999999999"),
            ("http-date-far-future", "Fri, 31 Dec 9999 23:59:59 GMT"),
        )
    ],
    *[
        Row(  # no usable hint: retried after the provider's own backoff
            f"429-retry-after-{name}",
            (Fault("rate_limit", retry_after_raw=value),),
            None,
            calls=2,
        )
        for name, value in (("negative", "-30"), ("garbage", "soon"), ("infinite", "1e999"))
    ],
    Row(
        "connection-refused",
        (),
        UpstreamUnavailable,
        "could not connect",
        calls=0,
        refused=True,
    ),
]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
async def test_fault(row: Row, http: httpx.AsyncClient, openai_double: OpenAIDouble) -> None:
    openai_double.script(*row.faults)
    base_url = f"http://127.0.0.1:{free_port()}" if row.refused else openai_double.base_url
    provider = OpenAICompatProvider(
        http, name="openai", base_url=base_url, api_key=API_KEY, backoff=0.25
    )
    request = GenerationRequest(
        model=row.model, prompt="an otter", num_images=row.n, width=1024, height=1024
    )
    context = GenerationContext(deadline=asyncio.get_running_loop().time() + DEADLINE)

    started = time.monotonic()
    if row.error is None:
        result = await provider.generate(request, context)
        assert len(result.images) == row.images
        assert result.missing == row.n - row.images
    else:
        with pytest.raises(row.error) as caught:
            await provider.generate(request, context)
        assert row.words.lower() in caught.value.message.lower(), caught.value.message
        if row.status is not None:
            assert isinstance(caught.value, UpstreamHTTPError)
            assert caught.value.status == row.status
        if row.retry_after is not None:
            assert isinstance(caught.value, UpstreamRateLimited)
            assert caught.value.retry_after == row.retry_after
        if row.absent is not None:
            assert row.absent not in caught.value.message
    elapsed = time.monotonic() - started

    assert elapsed <= DEADLINE + SLACK, f"took {elapsed:.2f}s"
    assert openai_double.stats()["total_calls"] == row.calls
