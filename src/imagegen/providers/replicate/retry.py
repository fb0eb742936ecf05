"""The one retry wrapper of the Replicate client: what is retried, how long it waits, when it stops.

Reads (GET a prediction, a model, a version; cancel) are idempotent: they are retried on 429, any
5xx, connection errors and timeouts. A create is not: a 5xx, a timeout or a dropped connection may
come after Replicate started (and bills) a prediction, so a create is retried only when it surely
started nothing: a 429 (a throttled create starts no prediction) or a failure to connect at all
(``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``: nothing was sent). Waits honour the
server's retry-after (clamped: ``imagegen.retry_after``), grow exponentially with jitter
otherwise, and never run past the deadline. A throttled create given a ``pace`` (imagegen's own
create rate limit) takes its turn there again before it is sent again: a retry outside the
limit would compete with the creates inside it, and where imagegen paces creates at the
account's rate, it would be throttled again every time.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from imagegen.providers.replicate.errors import retry_after_of
from imagegen.upstream import Reply

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts in all (the first included) and the exponential backoff between them."""

    max_attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 20.0
    jitter: float = 0.1

    def backoff(self, attempt: int, draw: Callable[[], float]) -> float:
        """Delay after failed attempt ``attempt`` (1-based): base * 2^(n-1), capped, ±jitter."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return delay * (1 + self.jitter * (2 * draw() - 1))


def _retryable_status(status: int, *, idempotent: bool) -> bool:
    return status == 429 or (idempotent and status >= 500)


def _retryable_error(exc: httpx.TransportError, *, idempotent: bool) -> bool:
    return idempotent or isinstance(exc, _NOT_SENT)


class Retrier:
    """Sends a request again while it is safe and the deadline allows. Time and sleep injected."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        sleep: Sleep,
        clock: Clock,
        draw: Callable[[], float] = random.random,
        retry_after: Callable[[Reply], float | None] = retry_after_of,
    ) -> None:
        self._policy = policy
        self._retry_after = retry_after
        self._sleep = sleep
        self._clock = clock
        self._draw = draw

    async def send(
        self,
        send: Callable[[], Awaitable[Reply]],
        *,
        idempotent: bool,
        deadline: float,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> Reply:
        """The first reply that should not be retried, or the last one; re-raises the last error.

        ``pace``: awaited before a throttled (429) request is sent again. Errors are returned
        (or raised) untranslated: the caller turns them into imagegen errors.
        """
        attempt = 1
        while True:
            try:
                response = await send()
            except httpx.TransportError as exc:
                if not _retryable_error(exc, idempotent=idempotent):
                    raise
                if not await self._pause(attempt, None, deadline, repr(exc)):
                    raise
            else:
                if not _retryable_status(response.status_code, idempotent=idempotent):
                    return response
                throttled = response.status_code == 429
                hint = self._retry_after(response) if throttled else None
                if not await self._pause(attempt, hint, deadline, str(response.status_code)):
                    return response
                if throttled and pace is not None:
                    await pace()
            attempt += 1

    async def _pause(
        self, attempt: int, retry_after: float | None, deadline: float, why: str
    ) -> bool:
        """Sleep before the next attempt; False when attempts or time have run out."""
        if attempt >= self._policy.max_attempts:
            return False
        delay = self._policy.backoff(attempt, self._draw)
        if retry_after is not None:
            delay = max(delay, retry_after)
        if self._clock() + delay >= deadline:
            return False
        log.info("replicate: retrying after %s in %.2fs (attempt %d)", why, delay, attempt + 1)
        await self._sleep(delay)
        return True
