"""The per-key checks every create passes before anything is stored or sent upstream.

- allowed models and requests per minute: ``check`` (before the create);
- concurrent generations and images per day: ``admission`` (held while the job is written).
  Both are counted from the store: the key's queued and running jobs, and the images of its
  jobs since UTC midnight (succeeded: delivered; queued or running: asked for). So they hold
  across replicas sharing a database; within one process a per-key lock makes them exact.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from imagegen.auth.keys import ApiKey
from imagegen.errors import KeyLimitExceeded, ModelNotAllowed, QuotaExceeded
from imagegen.limits.rate import RateWindow


@dataclass(frozen=True, slots=True)
class KeyLoad:
    active: int  # queued or running now
    images_today: int  # delivered or asked for since UTC midnight


class LoadCounts(Protocol):
    async def key_load(self, owner: str, since: datetime) -> KeyLoad: ...


def utc_midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


class KeyGate:
    def __init__(
        self, counts: LoadCounts, rate: RateWindow, *, clock: Callable[[], datetime]
    ) -> None:
        self._counts = counts
        self._rate = rate
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    async def check(self, key: ApiKey, models: Iterable[str]) -> None:
        """``ModelNotAllowed`` (403) or ``KeyLimitExceeded`` (429, rpm); counts the request."""
        limits = key.limits
        if limits.models is not None:
            names = list(models)
            if not any(name in limits.models for name in names):
                allowed = ", ".join(limits.models) or "none"
                raise ModelNotAllowed(
                    f"model '{names[0]}' is not allowed for key '{key.name}' (allowed: {allowed})"
                )
        if limits.rpm is not None:
            wait = await self._rate.hit(key.id, limits.rpm)
            if wait is not None:
                raise KeyLimitExceeded(
                    f"rate limit exceeded: key '{key.name}' may send {limits.rpm} requests "
                    f"per minute; retry in {max(1, math.ceil(wait))} s",
                    limit="rpm",
                    retry_after=wait,
                )

    def admission(
        self, key: ApiKey, images: int
    ) -> Callable[[], AbstractAsyncContextManager[None]] | None:
        """What ``JobRunner.submit`` holds while it writes the job; None without such limits."""
        if key.limits.max_concurrent is None and key.limits.images_per_day is None:
            return None
        return lambda: self._admit(key, images)

    @asynccontextmanager
    async def _admit(self, key: ApiKey, images: int) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key.id, asyncio.Lock())
        async with lock:
            now = self._clock()
            midnight = utc_midnight(now)
            load = await self._counts.key_load(key.id, midnight)
            self._check_concurrency(key, load)
            self._check_quota(key, load, images, now, midnight + timedelta(days=1))
            yield

    @staticmethod
    def _check_concurrency(key: ApiKey, load: KeyLoad) -> None:
        limit = key.limits.max_concurrent
        if limit is not None and load.active >= limit:
            raise KeyLimitExceeded(
                f"concurrency limit exceeded: key '{key.name}' may run {limit} generations at "
                "once; retry when one finishes",
                limit="max_concurrent",
                retry_after=1.0,
            )

    @staticmethod
    def _check_quota(
        key: ApiKey, load: KeyLoad, images: int, now: datetime, resets: datetime
    ) -> None:
        quota = key.limits.images_per_day
        if quota is not None and load.images_today + images > quota:
            raise QuotaExceeded(
                f"quota exceeded: key '{key.name}' may make {quota} images per day (UTC); "
                f"{load.images_today} made or in progress today, {images} asked for; "
                f"resets at {resets:%Y-%m-%dT%H:%M:%SZ}",
                limit="images_per_day",
                retry_after=(resets - now).total_seconds(),
            )
