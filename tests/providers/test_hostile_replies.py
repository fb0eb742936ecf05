"""What a hostile upstream may send, and the bounds imagegen keeps: progress parsing that stays
linear, one clamped Retry-After parser, size-capped reads, credentials redacted from error text.

Over ``httpx.MockTransport`` (no network): the doubles serve the same over real HTTP in
``tests/faults``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from imagegen.errors import PredictionFailed, UpstreamHTTPError, UpstreamRateLimited
from imagegen.models import GenerationRequest
from imagegen.providers.base import GenerationContext
from imagegen.providers.openai_compat import OpenAICompatProvider
from imagegen.providers.openai_compat.wire import retry_after as openai_retry_after
from imagegen.providers.replicate import ReplicateProvider, RetryPolicy
from imagegen.providers.replicate.errors import retry_after_of
from imagegen.providers.replicate.prediction import LOGS_TAIL, progress_of
from imagegen.providers.replies import (
    REDACTED,
    ReplyLimits,
    ReplyTooLarge,
    Scrubber,
    send_capped,
)
from imagegen.retry_after import clamp, parse_retry_after, retry_after
from imagegen.upstream import HttpxUpstream

# Made up, in a Replicate token's shape (r8_ and 37 letters and digits): what must never leak.
TOKEN = "r8_" + "FakeTestToken" + "0" * 24
OPENAI_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
TQDM = " 50%|█████     | 2/4 [00:01<00:01,  2.00it/s]\n"
NOW = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)

# --- 1. progress from logs, in bounded time ----------------------------------------------------

HOSTILE_LOGS = {
    "20000-blank-lines": "\n" * 20_000,
    "blank-lines-then-bar": TQDM + "\n" * 20_000,
    "bar-then-blank-lines": "\n" * 20_000 + TQDM,
    "spaces-and-newlines": " \n" * 200_000,
    "huge-single-line": "x" * 8_000_000,
    "huge-line-of-spaces": " " * 8_000_000,
    "many-percent-signs": "%" * 2_000_000,
    "percent-bars": (" 1%|" + "%|" * 20 + " 9\n") * 100_000,
    "digits-percent": "9" * 1_000_000 + "%|" * 1_000_000,
    "carriage-returns": "\r" * 1_000_000 + TQDM,
}


@pytest.mark.parametrize("logs", HOSTILE_LOGS.values(), ids=HOSTILE_LOGS.keys())
def test_progress_parsing_is_bounded_whatever_the_logs(logs: str) -> None:
    # Only the last LOGS_TAIL characters are read, so the time does not grow with the logs:
    # 20,000 blank lines took seconds with the old multi-line regex. The bound is generous.
    started = time.perf_counter()
    for _ in range(10):
        progress_of(logs)
    assert (time.perf_counter() - started) / 10 < 0.05


def test_progress_still_comes_from_the_last_bar() -> None:
    assert progress_of(HOSTILE_LOGS["bar-then-blank-lines"]) == 0.5
    assert progress_of(HOSTILE_LOGS["carriage-returns"]) == 0.5
    assert progress_of(" 10%|█ | 1/10 [..]\n 30%|███ | 3/10 [..]\n") == 0.3
    assert progress_of(TQDM + "x" * LOGS_TAIL) is None  # past the tail: not read
    assert progress_of("100%|██████████| 4/4 [00:04<00:00]\n") == 1.0
    assert progress_of(" 0%|  | 0/0\n") is None


# --- 3. one Retry-After parser, clamped ----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("3600", 60.0),
        ("99999999999999999999", 60.0),
        ("1e308", 60.0),
        ("1e309", None),  # infinite: no value
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("", None),
        ("9" * 10_000, None),
        ("Fri, 27 Nov 2026 08:00:30 GMT", 30.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 60.0),
        ("Fri, 27 Nov 2026 07:59:00 GMT", 0.0),
        ("Fri, 99 Foo 2026 99:99:99 GMT", None),
        (None, None),
    ],
)
def test_retry_after_is_parsed_once_and_clamped(header: str | None, seconds: float | None) -> None:
    assert retry_after(header, 60.0, now=lambda: NOW) == seconds


def test_clamp_and_its_bound() -> None:
    assert clamp(None) is None
    assert clamp(-1.0) == 0.0
    assert clamp(float("inf"), 10.0) == 10.0
    assert clamp(30.0, 10.0) == 10.0
    assert parse_retry_after("3600") == 3600.0  # unclamped for those who bound it themselves


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Retry-After": "86400"}, {}, 60.0),
        ({"Retry-After": "-3"}, {"retry_after": 1e12}, 60.0),
        ({"Retry-After": "garbage"}, {"retry_after": "-1"}, None),
        ({}, {"detail": "Your rate limit resets in ~99999s."}, 60.0),
        ({"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, {}, 60.0),
    ],
)
def test_replicate_retry_after_is_clamped(
    headers: dict[str, str], body: dict[str, Any], expected: float | None
) -> None:
    response = httpx.Response(429, json=body, headers=headers)
    assert retry_after_of(response, 60.0) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1e15"}, 60.0),
        ({"retry-after-ms": "-10", "retry-after": "2"}, 2.0),
        ({"retry-after": "31536000"}, 60.0),
        ({"retry-after": "later"}, None),
    ],
)
def test_openai_retry_after_is_clamped(headers: dict[str, str], expected: float | None) -> None:
    assert openai_retry_after(httpx.Headers(headers), 60.0) == expected


# --- 3. error text: credentials redacted, length bounded -----------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"invalid token {TOKEN}",
        f"Authorization: Bearer {TOKEN}",
        f"Authorization: bearer some-opaque-credential-{TOKEN[-6:]}",
        f"Incorrect API key provided: {OPENAI_KEY}.",
        "Incorrect API key provided: sk-proj-****************************6789.",
        f'{{"headers": {{"authorization": "Bearer {OPENAI_KEY}"}}}}',
    ],
)
def test_credentials_are_redacted(text: str) -> None:
    scrubbed = Scrubber([TOKEN, OPENAI_KEY])(text)
    assert REDACTED in scrubbed
    for secret in (TOKEN, OPENAI_KEY, TOKEN[-6:], "6789"):
        assert secret not in scrubbed


def test_whatever_key_was_sent_is_redacted_even_without_a_known_shape() -> None:
    key = "localai-0f9e8d7c6b5a"
    assert Scrubber([key])(f"key {key} refused") == f"key {REDACTED} refused"


def test_error_text_is_truncated() -> None:
    scrubbed = Scrubber([TOKEN], max_chars=1000)("e" * 5_000_000 + TOKEN)
    assert len(scrubbed) < 1100
    assert scrubbed.endswith("(truncated)")


# --- 2. replies are size-capped, read streaming --------------------------------------------------


class CountingStream(httpx.AsyncByteStream):
    """``total`` bytes of JSON-ish filler, counting what the reader actually pulled."""

    def __init__(self, total: int, chunk: int = 65536) -> None:
        self.total, self.chunk, self.pulled = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            size = min(self.chunk, self.total - self.pulled)
            self.pulled += size
            yield b" " * size


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_oversize_reply_is_refused_at_the_cap(declared: bool) -> None:
    stream = CountingStream(100_000_000)

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-length": str(stream.total)} if declared else {}
        return httpx.Response(200, headers=headers, stream=stream)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(ReplyTooLarge) as info:
            await send_capped(
                HttpxUpstream(http),
                "GET",
                "https://up.test/x",
                headers={},
                max_bytes=1 << 20,
                provider="up",
                action="reading x",
            )
    assert "larger than 1048576 bytes" in info.value.message
    assert "IMAGEGEN_UPSTREAM_MAX_RESPONSE_BYTES" in info.value.message
    assert stream.pulled <= (0 if declared else (1 << 20) + stream.chunk)


async def test_a_reply_within_the_cap_is_read_whole() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True}, headers={"x-a": "1"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        upstream = HttpxUpstream(http)
        response = await send_capped(
            upstream,
            "GET",
            "https://up.test/x",
            headers={},
            max_bytes=1024,
            provider="up",
            action="x",
        )
    assert response.json() == {"ok": True}
    assert response.headers["x-a"] == "1"


# --- the providers put it together ---------------------------------------------------------------


def replicate(handler: Callable[[httpx.Request], httpx.Response], **limits: Any) -> Any:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    provider = ReplicateProvider(
        http,
        api_token=TOKEN,
        base_url="https://api.replicate.test",
        wait_seconds=0,
        poll_interval=0.001,
        retry=RetryPolicy(max_attempts=1),
        replies=ReplyLimits(**limits),
    )
    return http, provider


def generation(model: str = "o/n") -> GenerationRequest:
    return GenerationRequest(model=model, prompt="an otter", num_images=1, width=512, height=512)


def context(seconds: float = 10.0) -> GenerationContext:
    return GenerationContext(deadline=asyncio.get_running_loop().time() + seconds)


async def test_replicate_error_echoing_the_token_is_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        detail = f"token {TOKEN} is not valid (Authorization: Bearer {TOKEN})" + "!" * 5000
        return httpx.Response(403, json={"title": "Forbidden", "detail": detail, "status": 403})

    http, provider = replicate(handler)
    async with http:
        with pytest.raises(UpstreamHTTPError) as info:
            await provider.generate(generation(), context())
    error = info.value
    assert error.status == 403
    for text in (error.message, error.detail or ""):
        assert TOKEN not in text
        assert REDACTED in text
        assert len(text) < 1100


async def test_a_failed_prediction_echoing_the_token_is_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404, json={"detail": "nope", "status": 404})
        if request.url.path.endswith("/predictions"):  # the create, on the model's path
            return httpx.Response(
                201, json={"id": "p1", "status": "failed", "error": f"env: {TOKEN}"}
            )
        return httpx.Response(200, json={"id": "p1", "status": "failed"})

    http, provider = replicate(handler)
    async with http:
        with pytest.raises(PredictionFailed) as info:
            await provider.generate(generation("o/n:" + "a" * 64), context())
    assert TOKEN not in info.value.message
    assert REDACTED in info.value.message


async def test_replicate_429_retry_after_is_clamped_before_a_client_sees_it() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"detail": "Request was throttled.", "status": 429, "retry_after": 10**9}
        return httpx.Response(429, json=body, headers={"Retry-After": "99999999"})

    http, provider = replicate(handler, max_retry_after=30.0)
    async with http:
        with pytest.raises(UpstreamRateLimited) as info:
            await provider.generate(generation(), context())
    assert info.value.retry_after == 30.0


async def test_replicate_oversize_prediction_is_a_502_naming_the_cap() -> None:
    stream = CountingStream(100_000_000)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=stream)

    http, provider = replicate(handler, max_bytes=1 << 20)
    async with http:
        started = time.monotonic()
        with pytest.raises(ReplyTooLarge) as info:
            await provider.generate(generation(), context())
    assert time.monotonic() - started < 5
    assert "IMAGEGEN_UPSTREAM_MAX_RESPONSE_BYTES" in info.value.message
    assert stream.pulled < 2 << 20


async def test_openai_compatible_errors_are_redacted_and_replies_capped() -> None:
    stream = CountingStream(100_000_000)

    def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["model"] == "big":
            return httpx.Response(200, stream=stream)
        sent = request.headers["authorization"]
        message = f"Incorrect API key provided: {OPENAI_KEY}. Header was {sent}."
        return httpx.Response(401, json={"error": {"message": message, "code": "invalid_api_key"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        provider = OpenAICompatProvider(
            http,
            name="openai",
            base_url="https://up.test",
            api_key=OPENAI_KEY,
            replies=ReplyLimits(max_bytes=1 << 20),
        )
        with pytest.raises(UpstreamHTTPError) as info:
            await provider.generate(generation("dall-e-2"), context())
        assert OPENAI_KEY not in info.value.message
        assert REDACTED in info.value.message
        with pytest.raises(ReplyTooLarge):
            await provider.generate(generation("big"), context())
    assert stream.pulled < 2 << 20
