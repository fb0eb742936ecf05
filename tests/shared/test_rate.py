"""The create rate shared through Redis: GCRA in a Lua script on Redis' clock.

Against the machine's Redis: a bucket's burst, its interval, a deadline it cannot meet, a
cancelled waiter's token handed back, an unreachable Redis; and three separate clients sharing
one account's bucket while creating predictions on the Replicate double at the account's rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from tests.fakes.replicate_double import ReplicateDouble

from imagegen.errors import DeadlineExceeded, SharedStateUnavailable
from imagegen.jobs.limits import Limits, ProviderLimits
from imagegen.shared.client import SharedRedis, open_redis
from imagegen.shared.rate import RedisRateLimiter, redis_rates

Connect = Callable[[], SharedRedis]


def loop_time() -> float:
    return asyncio.get_running_loop().time()


async def test_the_burst_is_free_then_tokens_come_one_interval_apart(connect: Connect) -> None:
    redis = connect()
    limiter = RedisRateLimiter(redis, redis.key("rate", "acct"), per_minute=600, burst=3)
    started = loop_time()
    for _ in range(3):
        await limiter.acquire(started + 10)
    assert loop_time() - started < 0.09  # the burst: no wait
    await limiter.acquire(started + 10)
    await limiter.acquire(started + 10)
    assert loop_time() - started >= 0.19  # two more, 100 ms apart at 600/min


async def test_a_token_past_the_deadline_fails_at_once_and_reserves_nothing(
    connect: Connect,
) -> None:
    redis = connect()
    limiter = RedisRateLimiter(redis, redis.key("rate", "acct"), per_minute=60, burst=1)
    now = loop_time()
    await limiter.acquire(now + 10)  # the only token; the next one is 1 s away
    with pytest.raises(DeadlineExceeded):
        await limiter.acquire(now + 0.5)
    assert loop_time() - now < 0.3  # refused at once, not after waiting
    other = RedisRateLimiter(redis, redis.key("rate", "acct"), per_minute=60, burst=1)
    started = loop_time()
    await other.acquire(started + 5)  # the refused caller took no turn: 1 s after the first
    assert 0.5 < loop_time() - now < 1.5


async def test_a_cancelled_waiter_hands_its_token_back(connect: Connect) -> None:
    redis = connect()
    key = redis.key("rate", "acct")
    first = RedisRateLimiter(redis, key, per_minute=60, burst=1)
    now = loop_time()
    await first.acquire(now + 10)
    waiter = asyncio.create_task(first.acquire(now + 10))  # waits ~1 s for the next token
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    started = loop_time()
    await RedisRateLimiter(connect(), key, per_minute=60, burst=1).acquire(started + 5)
    assert loop_time() - now < 1.5  # the next token, not the one after it (2 s)


async def test_an_unreachable_redis_fails_fast_with_a_typed_error() -> None:
    from tests.support.redis import free_port

    redis = open_redis(f"redis://127.0.0.1:{free_port()}/0", "imagegen-test:")
    limiter = RedisRateLimiter(redis, redis.key("rate", "acct"), per_minute=600, burst=1)
    started = time.monotonic()
    try:
        with pytest.raises(SharedStateUnavailable) as caught:
            await limiter.acquire(loop_time() + 30)
    finally:
        await redis.aclose()
    assert time.monotonic() - started < 3
    assert caught.value.retry_after is not None
    assert "Redis" in caught.value.message


async def test_each_provider_account_has_its_own_bucket(connect: Connect) -> None:
    limits = ProviderLimits(
        {"replicate": Limits(per_minute=60, burst=1), "replicate_team": Limits(per_minute=60)},
        rates=redis_rates(connect()),
    )
    now = loop_time()
    await limits("replicate").acquire_create(now + 5)
    await limits("replicate_team").acquire_create(now + 5)  # another account: not waiting
    assert loop_time() - now < 0.5
    with pytest.raises(DeadlineExceeded):
        await limits("replicate").acquire_create(loop_time() + 0.5)


@pytest.mark.timeout(90)
async def test_three_clients_share_one_accounts_rate_with_no_upstream_429(
    connect: Connect, replicate_double: ReplicateDouble
) -> None:
    """Three clients (as three processes would), four jobs each, creating predictions on a
    double that allows the account's 900 creates/min: the creates go out at 900/min in all."""
    per_minute, creates = 900.0, 90  # 15 a second: six seconds of creates
    replicate_double.configure(create_rate=per_minute, create_burst=5, duration=0.0)
    clients = [connect() for _ in range(3)]
    limiters = [
        RedisRateLimiter(redis, redis.key("rate", "replicate"), per_minute, burst=1)
        for redis in clients
    ]
    granted: list[float] = []
    statuses: list[int] = []
    remaining = iter(range(creates))
    headers = {"Authorization": "Bearer r8_test"}
    body = {"version": "black-forest-labs/flux-schnell", "input": {"prompt": "a fox"}}

    async def job(limiter: RedisRateLimiter, api: httpx.AsyncClient) -> None:
        for _ in remaining:
            await limiter.acquire(loop_time() + 60)
            granted.append(time.monotonic())
            response = await api.post(
                "/v1/models/black-forest-labs/flux-schnell/predictions",
                json={"input": body["input"]},
                headers=headers,
            )
            statuses.append(response.status_code)

    async with httpx.AsyncClient(base_url=replicate_double.base_url, timeout=30) as api:
        await asyncio.gather(*(job(limiter, api) for limiter in limiters for _ in range(4)))

    assert statuses.count(429) == 0
    assert set(statuses) == {201}, statuses
    stats = replicate_double.stats()
    assert stats["creates"]["total"] == creates
    assert stats["creates_rate_limited"] == 0
    granted.sort()
    achieved = (len(granted) - 1) / (granted[-1] - granted[0]) * 60
    assert abs(achieved - per_minute) / per_minute <= 0.05, achieved
