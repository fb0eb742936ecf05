"""Each API key's requests per minute in Redis (``RedisRateWindow``), against the machine's Redis:
separate clients (as separate processes) share one key's limit exactly, a refusal says when the
oldest counted request leaves the window, the window slides, and an unreachable Redis is a typed
error, fast."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from tests.support.redis import free_port

from imagegen.errors import SharedStateUnavailable
from imagegen.shared.client import SharedRedis, open_redis
from imagegen.shared.keyrate import RedisRateWindow

Connect = Callable[[], SharedRedis]


async def test_separate_clients_share_one_keys_limit_exactly(connect: Connect) -> None:
    windows = [RedisRateWindow(connect()) for _ in range(3)]  # three processes' clients
    results = await asyncio.gather(
        *(windows[i % 3].hit("key_a", 7) for i in range(40))  # a burst, all at once
    )
    assert sum(wait is None for wait in results) == 7
    refused = [wait for wait in results if wait is not None]
    assert all(0 < wait <= 60 for wait in refused)
    assert await windows[0].hit("key_b", 7) is None  # another key has a window of its own


async def test_a_refusal_says_when_the_oldest_counted_request_leaves(connect: Connect) -> None:
    window = RedisRateWindow(connect())
    assert await window.hit("key_a", 2) is None
    await asyncio.sleep(0.2)
    assert await window.hit("key_a", 2) is None
    wait = await window.hit("key_a", 2)
    assert wait is not None
    assert 59.0 < wait < 59.9  # the first one, 0.2 s older than the second, leaves first


async def test_the_window_slides(connect: Connect) -> None:
    window = RedisRateWindow(connect(), window=2.0)
    assert await window.hit("key_a", 2) is None
    await asyncio.sleep(1.0)
    assert await window.hit("key_a", 2) is None
    wait = await window.hit("key_a", 2)
    assert wait is not None
    assert 0 < wait <= 1.0
    await asyncio.sleep(wait + 0.05)
    assert await window.hit("key_a", 2) is None  # one place came free
    assert await window.hit("key_a", 2) is not None  # and only one: the second is 1 s younger


async def test_refused_requests_take_no_place(connect: Connect) -> None:
    redis = connect()
    window = RedisRateWindow(redis)
    assert await window.hit("key_a", 1) is None
    for _ in range(5):
        assert await window.hit("key_a", 1) is not None
    assert await redis.client.zcard(redis.key("keyrate", "key_a")) == 1


async def test_an_unreachable_redis_is_a_typed_error_at_once() -> None:
    redis = open_redis(f"redis://127.0.0.1:{free_port()}/0", "imagegen-test:")
    window = RedisRateWindow(redis)
    started = time.monotonic()
    try:
        with pytest.raises(SharedStateUnavailable) as caught:
            await window.hit("key_a", 5)
    finally:
        await redis.aclose()
    assert time.monotonic() - started < 5
    assert "request rate" in str(caught.value)
    assert caught.value.retry_after is not None
