"""One provider account's create rate, shared by every process: GCRA in a Lua script.

The bucket is one key holding the account's theoretical arrival time (TAT, microseconds on
Redis' clock). The script reads ``TIME``, refills by the time elapsed since (a TAT in the past
is a full bucket), and either reserves the next token (moving the TAT one interval on) and
returns how long to wait for it, or refuses when that wait would pass the caller's deadline.
Reservations are handed out in arrival order across every process, as the in-process
``RateLimiter`` does within one: N creates a minute for the account, not for each process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from imagegen.jobs.limits import Limits, queue_deadline_exceeded
from imagegen.shared.client import SharedRedis, unavailable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# KEYS[1] the bucket; ARGV interval, tolerance, longest acceptable wait (all microseconds).
# Returns {wait, reserved TAT, previous TAT}, or {-1, wait} when the wait is too long.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > max_wait then return {-1, wait} end
local reserved = tat + interval
local ttl = math.ceil((reserved - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', reserved), 'PX', ttl)
if wait < 0 then wait = 0 end
return {wait, string.format('%d', reserved), string.format('%d', tat)}
"""

# A cancelled waiter's token goes back only if nobody reserved after it.
GIVE_BACK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""

MICROS = 1_000_000


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class RedisRateLimiter:
    """``per_minute`` tokens a minute, ``burst`` at most at once, for every holder of ``key``."""

    def __init__(
        self,
        redis: SharedRedis,
        key: str,
        per_minute: float,
        burst: int,
        *,
        clock: Clock = _loop_time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be positive and burst at least 1")
        self._redis = redis
        self._key = key
        self._interval = round(60 * MICROS / per_minute)
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._take = redis.client.register_script(TAKE)
        self._give_back = redis.client.register_script(GIVE_BACK)

    async def acquire(self, deadline: float) -> None:
        """Wait for a token; ``DeadlineExceeded`` at once if it would come after ``deadline``,
        ``SharedStateUnavailable`` if Redis cannot say (nothing is created then)."""
        max_wait = max(0, int((deadline - self._clock()) * MICROS))
        with unavailable("the shared create rate could not be checked"):
            reply = await self._take(
                keys=[self._key], args=[self._interval, self._tolerance, max_wait]
            )
        wait = int(reply[0])
        if wait < 0:
            raise queue_deadline_exceeded()
        if wait == 0:
            return
        try:
            await self._sleep(wait / MICROS)
        except asyncio.CancelledError:
            await self._hand_back(reserved=reply[1], previous=reply[2])
            raise

    async def _hand_back(self, *, reserved: bytes, previous: bytes) -> None:
        try:
            await self._give_back(keys=[self._key], args=[reserved, previous])
        except Exception:  # best effort: the token is lost, never created twice
            return


def redis_rates(redis: SharedRedis) -> Callable[[str, Limits], RedisRateLimiter]:
    """The ``RateFactory`` of ``ProviderLimits``: one bucket per provider account (its name)."""

    def build(provider: str, limits: Limits) -> RedisRateLimiter:
        assert limits.per_minute is not None
        key = redis.key("rate", provider)
        return RedisRateLimiter(redis, key, limits.per_minute, limits.burst)

    return build
