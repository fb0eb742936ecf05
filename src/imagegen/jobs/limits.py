"""Per-provider limits, so that a burst waits in imagegen's queue instead of failing upstream.

Two gates, both honouring each job's deadline:

- **Concurrency** (a slot per running generation): a job holds a slot from the moment it leaves
  ``queued`` until its provider returns. Jobs waiting for a slot are the queue; it is bounded
  (``max_queue``: a job finding every slot taken and ``max_queue`` jobs waiting is refused at
  once with ``QueueFull``, 503 + ``Retry-After``, before anything is stored).
- **Create rate** (a token per paid upstream call): a provider awaits
  ``GenerationContext.acquire_create`` before each prediction it creates, so a generation fanned
  out over three predictions takes three tokens. It is GCRA, a token bucket (``per_minute``
  tokens a minute, holding ``burst``) that hands out reservations in arrival order: a waiter
  knows at once when its turn comes, and if that is past its deadline it fails at once with
  ``DeadlineExceeded`` instead of waiting for nothing.

The create rate is a ``CreateRate``: by default the in-process ``RateLimiter`` (exact for one
process); with Redis, ``imagegen.shared.rate.RedisRateLimiter``, one bucket per provider account
shared by every process and replica. Concurrency slots and the queue are always per process.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from imagegen.errors import DeadlineExceeded, QueueFull

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def queue_deadline_exceeded() -> DeadlineExceeded:
    return DeadlineExceeded(
        "the generation waited in imagegen's queue (provider limits) past its deadline"
    )


@dataclass(frozen=True, slots=True)
class Limits:
    """One provider's limits: 0 concurrency = unlimited; no ``per_minute`` = no rate limit."""

    max_concurrency: int = 0
    per_minute: float | None = None
    burst: int = 1
    max_queue: int = 1000


class CreateRate(Protocol):
    """The create rate of one provider account."""

    async def acquire(self, deadline: float) -> None:
        """Wait for a token. ``deadline`` is on the event loop's clock: if the token would
        come after it, raise ``DeadlineExceeded`` at once. A cancelled waiter gives its token
        back when it can. Implementations that cannot tell (a shared store unreachable) raise
        ``SharedStateUnavailable`` rather than let the create go out unthrottled."""
        ...


# Builds a provider's create rate from its name (the account) and limits.
RateFactory = Callable[[str, "Limits"], CreateRate]


class RateLimiter:
    """GCRA over ``clock`` (seconds): ``per_minute`` tokens a minute, ``burst`` at most at once."""

    def __init__(self, per_minute: float, burst: int, *, clock: Clock, sleep: Sleep) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be positive and burst at least 1")
        self._interval = 60.0 / per_minute
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._tat: float | None = None  # theoretical arrival time of the next token

    async def acquire(self, deadline: float) -> None:
        """Wait for a token; ``DeadlineExceeded`` at once if it would come after ``deadline``."""
        now = self._clock()
        tat = now if self._tat is None else max(self._tat, now)
        allowed_at = tat - self._tolerance
        if allowed_at > deadline:
            raise queue_deadline_exceeded()
        self._tat = reserved = tat + self._interval
        if allowed_at <= now:
            return
        try:
            await self._sleep(allowed_at - now)
        except asyncio.CancelledError:
            if self._tat == reserved:  # nobody queued behind: hand the token back
                self._tat = tat
            raise

    def take_now(self, count: int) -> bool:
        """Take ``count`` tokens if the bucket gives them all without waiting (True); take
        none otherwise."""
        now = self._clock()
        tat = now if self._tat is None else max(self._tat, now)
        if tat + (count - 1) * self._interval - self._tolerance > now:
            return False
        self._tat = tat + count * self._interval
        return True


class ProviderLimiter:
    """The concurrency slots, queue bound and create rate of one provider."""

    def __init__(
        self,
        limits: Limits,
        *,
        clock: Clock = _loop_time,
        sleep: Sleep = asyncio.sleep,
        rate: CreateRate | None = None,
    ):
        """``rate``: the create rate to use (default: an in-process ``RateLimiter`` when
        ``limits.per_minute`` is set)."""
        self.limits = limits
        self._clock = clock
        self._slots = asyncio.Semaphore(limits.max_concurrency) if limits.max_concurrency else None
        if rate is None and limits.per_minute:
            rate = RateLimiter(limits.per_minute, limits.burst, clock=clock, sleep=sleep)
        self._rate = rate
        self._waiting = 0
        self._running = 0

    @property
    def waiting(self) -> int:
        """Jobs admitted but not yet holding a slot."""
        return self._waiting

    def room(self, cap: int) -> int:
        """How many more jobs could start at once here (``cap`` without a concurrency limit)."""
        if not self.limits.max_concurrency:
            return cap
        return max(0, min(cap, self.limits.max_concurrency - self._running - self._waiting))

    def admit(self, *, force: bool = False) -> QueueTicket:
        """A place in the queue; ``QueueFull`` when ``max_queue`` jobs already wait for the
        slots (``force``: a recovered job, which must run whatever the queue holds). Without a
        concurrency limit nobody waits for a slot, so nobody is refused."""
        capacity = self.limits.max_concurrency + self.limits.max_queue
        full = self.limits.max_concurrency and self._waiting + self._running >= capacity
        if full and not force:
            raise QueueFull(
                f"imagegen's queue is full ({self._waiting} generations waiting); try again later",
                retry_after=self._retry_after(),
            )
        self._waiting += 1
        return QueueTicket(self)

    def refuse_if_full(self, waiting: int) -> None:
        """``QueueFull`` when ``waiting`` jobs (in a shared database) fill ``max_queue``."""
        if self.limits.max_concurrency and waiting >= self.limits.max_queue:
            raise QueueFull(
                f"imagegen's queue is full ({waiting} generations waiting); try again later",
                retry_after=self._retry_after(waiting),
            )

    def _retry_after(self, waiting: int | None = None) -> float:
        if not self.limits.per_minute:
            return 5.0
        waiting = self._waiting if waiting is None else waiting
        return max(1.0, math.ceil(waiting * 60.0 / self.limits.per_minute))

    def _leave(self) -> None:
        self._waiting -= 1

    def free(self) -> bool:
        """Whether a job entering ``slot`` now takes one at once, without waiting."""
        return self._slots is None or not self._slots.locked()

    async def take_free(self, ticket: QueueTicket) -> bool:
        """Give ``ticket`` a slot now, if one is free: True then, and its job may be written
        ``running`` at once (``slot`` uses this slot; ``ticket.leave`` frees it if ``slot``
        never does). It never waits: a free slot is taken without yielding to the loop, so no
        other job can take it in between."""
        if self._slots is not None:
            if self._slots.locked():
                return False
            await self._slots.acquire()  # free: returns without suspending
        ticket._held = True
        return True

    def _release(self) -> None:
        if self._slots is not None:
            self._slots.release()

    @asynccontextmanager
    async def slot(self, ticket: QueueTicket, deadline: float) -> AsyncIterator[None]:
        """Leave the queue for a running slot, waiting until ``deadline`` at most (none when
        ``take_free`` gave the ticket one)."""
        held, ticket._held = ticket._held, False  # the slot is this block's to free now
        try:
            if self._slots is not None and not held:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise queue_deadline_exceeded()
                if not self._slots.locked():  # a free slot is taken at once: no timer
                    await self._slots.acquire()
                else:
                    try:
                        async with asyncio.timeout(remaining):
                            await self._slots.acquire()
                    except TimeoutError:
                        raise queue_deadline_exceeded() from None
        finally:
            ticket.leave()
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._release()

    async def acquire_create(self, deadline: float) -> None:
        if self._rate is not None:
            await self._rate.acquire(deadline)

    def take_creates(self, count: int) -> bool:
        """Take ``count`` create tokens now, if the create rate gives them without waiting:
        True then (always, without a rate), and the creates they pay for need no other turn.
        A shared rate cannot tell without asking its store: False."""
        if self._rate is None:
            return True
        if isinstance(self._rate, RateLimiter):
            return self._rate.take_now(count)
        return False


class QueueTicket:
    """A job's place in a provider's queue, and the slot ``take_free`` gave it, if any, until
    ``slot`` takes that over; ``leave`` (idempotent) gives up both."""

    def __init__(self, limiter: ProviderLimiter) -> None:
        self._limiter: ProviderLimiter | None = limiter
        self._held = False

    @property
    def holds_slot(self) -> bool:
        return self._held

    def leave(self) -> None:
        if self._limiter is not None:
            self._limiter._leave()
            if self._held:
                self._held = False
                self._limiter._release()
            self._limiter = None


class ProviderLimits:
    """A limiter per provider name; providers without configured limits get ``default``.
    ``rates`` builds the create rate of a provider that has one (default: in-process)."""

    def __init__(
        self,
        limits: Mapping[str, Limits] | None = None,
        *,
        default: Limits | None = None,
        clock: Clock = _loop_time,
        sleep: Sleep = asyncio.sleep,
        rates: RateFactory | None = None,
    ) -> None:
        self._limits = dict(limits or {})
        self._default = default or Limits()
        self._clock = clock
        self._sleep = sleep
        self._rates = rates
        self._limiters: dict[str, ProviderLimiter] = {}

    def room(self, cap: int) -> int:
        """How many more jobs this process could start at once, over every provider it has
        limits for (``cap`` at most)."""
        names = set(self._limits) | set(self._limiters)
        if not names:
            return cap
        return min(cap, sum(self(name).room(cap) for name in names))

    def __call__(self, provider: str) -> ProviderLimiter:
        limiter = self._limiters.get(provider)
        if limiter is None:
            limits = self._limits.get(provider, self._default)
            rate = self._rates(provider, limits) if self._rates and limits.per_minute else None
            limiter = ProviderLimiter(limits, clock=self._clock, sleep=self._sleep, rate=rate)
            self._limiters[provider] = limiter
        return limiter
