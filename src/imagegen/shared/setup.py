"""The shared state built from ``Settings``: Redis and its event bus, or a warning that
several processes will not share what Redis would hold."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

from imagegen.config import Settings
from imagegen.errors import SharedStateUnavailable
from imagegen.jobs.events import JobEvents
from imagegen.shared.client import SharedRedis, open_redis

log = logging.getLogger(__name__)

UNSHARED = (
    "IMAGEGEN_REDIS_URL is not set: processes sharing this database do not share provider "
    "create rates (each sends up to each account's rate), API keys' requests per minute (each "
    "allows a key its rpm) or job events (event streams follow "
    "other processes' jobs by re-reading the database every IMAGEGEN_SSE_HEARTBEAT seconds)"
)


async def open_shared_state(
    stack: AsyncExitStack, settings: Settings, events: JobEvents
) -> SharedRedis | None:
    """Redis with ``events`` attached to its bus (``stack`` closes both), or None without
    ``IMAGEGEN_REDIS_URL``. An unreachable Redis does not stop start-up: ``/readyz`` says so
    and what needs it fails with ``SharedStateUnavailable`` until it is back."""
    if settings.redis_url is None:
        if not settings.resolved_database_url.startswith("sqlite"):
            log.warning(UNSHARED)
        return None
    from imagegen.shared.events import RedisEventBus  # with Redis only: its models cost start-up

    redis = open_redis(settings.redis_url, settings.redis_prefix)
    stack.push_async_callback(redis.aclose)
    try:
        await redis.check()
    except SharedStateUnavailable as exc:
        log.warning("%s; imagegen starts and waits for it", exc)
    bus = RedisEventBus(redis, events.deliver)
    events.attach(bus)
    await bus.start()
    stack.push_async_callback(bus.aclose)
    return redis
