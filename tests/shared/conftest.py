"""Redis for the tests of ``imagegen.shared``: the machine's server (or a private one), and a key
prefix of each test's own; the keys a test made are deleted after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from tests.support.redis import server_url, unique_prefix

from imagegen.shared.client import SharedRedis, open_redis


@pytest.fixture
def redis_url() -> str:
    return server_url()


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
async def connect(redis_url: str, prefix: str) -> AsyncIterator[Callable[[], SharedRedis]]:
    """Opens a separate client (its own connections) on the test's prefix, as another process
    would; all are closed, and the prefix's keys deleted, after the test."""
    opened: list[SharedRedis] = []

    def open_one() -> SharedRedis:
        opened.append(open_redis(redis_url, prefix))
        return opened[-1]

    yield open_one
    if opened:
        keys = [key async for key in opened[0].client.scan_iter(match=f"{prefix}*")]
        if keys:
            await opened[0].client.delete(*keys)
    for redis in opened:
        await redis.aclose()
