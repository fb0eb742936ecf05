"""Each API key's requests per minute, shared by every process: a sliding minute in Redis.

The ``RateWindow`` of ``imagegen.limits``, as ``MemoryRateWindow`` counts it within one process:
one sorted set per key holds the times (microseconds on Redis' clock) of the requests it counted
in the last minute. A Lua script reads ``TIME``, drops what is a minute old, and either counts
the request or says when the oldest counted one leaves the window; one script, so two replicas
never both take the last place. Redis unreachable is ``SharedStateUnavailable`` (503): the
request is refused, never let through unlimited.
"""

from __future__ import annotations

import uuid

from imagegen.limits.rate import WINDOW
from imagegen.shared.client import SharedRedis, unavailable

MICROS = 1_000_000

# KEYS[1] the key's window; ARGV window (microseconds), limit, a unique request id.
# Returns -1 when counted, else the microseconds until one more would be.
HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
redis.call('ZADD', KEYS[1], now, string.format('%d', now) .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
return -1
"""


class RedisRateWindow:
    """``RateWindow`` over Redis: one sliding minute per key for every process sharing it."""

    def __init__(self, redis: SharedRedis, *, window: float = WINDOW) -> None:
        self._redis = redis
        self._window = round(window * MICROS)
        self._hit = redis.client.register_script(HIT)

    async def hit(self, key_id: str, limit: int) -> float | None:
        """As ``RateWindow.hit``; ``SharedStateUnavailable`` when Redis cannot say."""
        if limit < 1:
            return self._window / MICROS
        with unavailable("the key's request rate could not be checked"):
            wait = await self._hit(
                keys=[self._redis.key("keyrate", key_id)],
                args=[self._window, limit, uuid.uuid4().hex],
            )
        return None if int(wait) < 0 else int(wait) / MICROS
