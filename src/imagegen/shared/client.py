"""Opening Redis: the client (imported lazily, with an install hint), key names, the health
check, and the translation of the client's errors into ``SharedStateUnavailable``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imagegen.errors import ConfigurationError, SharedStateUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Short timeouts: a Redis that does not answer fails the caller fast instead of holding it.
CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = 2.0
MAX_CONNECTIONS = 32  # per process, besides its one pub/sub connection
INSTALL_HINT = 'IMAGEGEN_REDIS_URL needs the redis client: pip install "imagegen[redis]"'


@dataclass(frozen=True, slots=True)
class SharedRedis:
    """A Redis client and the prefix of every key and channel imagegen uses in it."""

    client: Redis
    prefix: str

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def check(self) -> None:
        """PING; raises ``SharedStateUnavailable`` when Redis does not answer."""
        with unavailable("Redis did not answer PING"):
            await self.client.ping()

    async def aclose(self) -> None:
        await self.client.aclose(close_connection_pool=True)  # the pool is ours


def open_redis(url: str, prefix: str) -> SharedRedis:
    """A client for ``url`` (connections open on first use); ``ConfigurationError`` when the
    ``redis`` package is missing or the URL is not a Redis URL."""
    try:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError as exc:
        raise ConfigurationError(INSTALL_HINT) from exc
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": COMMAND_TIMEOUT,
        # One immediate retry renews a pooled connection a Redis restart broke; no backoff.
        "retry": Retry(NoBackoff(), 1),
        "health_check_interval": 30,
    }
    try:
        # Bounded: a burst waits (COMMAND_TIMEOUT at most) for one of MAX_CONNECTIONS.
        pool = BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=COMMAND_TIMEOUT, **options
        )
        client = Redis(connection_pool=pool)
    except ValueError as exc:
        raise ConfigurationError(f"IMAGEGEN_REDIS_URL is not a Redis URL: {exc}") from exc
    return SharedRedis(client, prefix)


@contextlib.contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Raise the client's errors (and OS errors under it) as ``SharedStateUnavailable``."""
    from redis.exceptions import RedisError

    try:
        yield
    except (RedisError, OSError) as exc:
        reason = type(exc).__name__
        raise SharedStateUnavailable(f"{what}: Redis is unreachable ({reason})") from exc
