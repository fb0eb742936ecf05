"""Who sent a request: ``Authorization: Bearer ig_...`` looked up by the hash of its secret.

Each replica keeps what it looked up for ``cache_seconds`` (1 s by default, 0 for none), so a
key revoked anywhere stops working everywhere within that time; a revoke on this replica takes
effect at once (``forget``). Unknown secrets are cached as unknown too, so a flood of bad keys
cannot become a flood of queries. While an answer is being looked up, requests that need it
wait for that one lookup instead of each sending its own (with 1,000 connections open, some 50
reads a second went out where one would do); with ``cache_seconds`` 0 each request reads.
``last_used_at`` is collected in memory and written by ``flush`` (the caller runs
``flush_every``), one transaction for all keys, never per request.

Anonymous requests are served only while no key exists (``active_count`` is 0) and the server
allows it (bound to loopback, or ``IMAGEGEN_ALLOW_ANONYMOUS``); once a key exists, every request
needs one. Revoking every key does not reopen a server bound openly, only one that allows
anonymous access.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from imagegen.auth.keys import ApiKey, hash_secret, looks_like_secret
from imagegen.auth.principal import ANONYMOUS, Principal
from imagegen.errors import Unauthenticated

log = logging.getLogger(__name__)

T = TypeVar("T")

MISSING = "missing API key: send Authorization: Bearer <key> (imagegen keys create NAME)"
MALFORMED = "malformed API key: expected Authorization: Bearer ig_..."
UNKNOWN = "invalid API key"  # unknown or revoked: the message does not tell them apart


class KeyLookup(Protocol):
    async def find(self, secret: str) -> ApiKey | None: ...

    async def active_count(self) -> int: ...

    async def touch(self, used: dict[str, datetime]) -> None: ...


class Authenticator:
    def __init__(
        self,
        keys: KeyLookup,
        *,
        anonymous_allowed: bool,
        cache_seconds: float = 1.0,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._anonymous_allowed = anonymous_allowed
        self._ttl = cache_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._open: tuple[float, bool] | None = None  # (until, no keys exist)
        self._used: dict[str, datetime] = {}
        # Lookups under way, by what they look up; ``forget`` starts a new epoch, and a lookup
        # begun before it neither caches its answer nor serves requests that come after.
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._epoch = 0

    async def authenticate(self, authorization: str | None) -> Principal:
        """The request's principal; ``Unauthenticated`` with the reason otherwise.

        While anonymous access is open, any ``Authorization`` is ignored (OpenAI SDKs always
        send their ``api_key``, whatever it is)."""
        if await self._anonymous_ok():
            return ANONYMOUS
        if authorization is None:
            raise Unauthenticated(MISSING)
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not looks_like_secret(secret):
            raise Unauthenticated(MALFORMED)
        key = await self._lookup(secret)
        if key is None or key.revoked:
            raise Unauthenticated(UNKNOWN)
        self._used[key.id] = self._clock()
        return Principal(key)

    async def _lookup(self, secret: str) -> ApiKey | None:
        now = self._monotonic()
        digest = hash_secret(secret)  # the cache holds no secrets
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        if self._ttl <= 0:
            return await self._keys.find(secret)
        return await self._shared(digest, partial(self._find, secret, digest, now))

    async def _find(self, secret: str, digest: str, now: float) -> ApiKey | None:
        epoch = self._epoch
        key = await self._keys.find(secret)
        if epoch == self._epoch:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, key)
        return key

    async def _anonymous_ok(self) -> bool:
        if not self._anonymous_allowed:
            return False
        now = self._monotonic()
        if self._open is not None and self._open[0] > now:
            return self._open[1]
        if self._ttl <= 0:
            return await self._keys.active_count() == 0
        return await self._shared("", partial(self._count, now))  # no digest is empty

    async def _count(self, now: float) -> bool:
        epoch = self._epoch
        none = await self._keys.active_count() == 0
        if epoch == self._epoch:
            self._open = (now + self._ttl, none)
        return none

    async def _shared(self, name: str, lookup: Callable[[], Awaitable[T]]) -> T:
        """``lookup``'s answer: one lookup under way per ``name``; a request that needs it
        while it runs waits for it (a waiter cancelled leaves it running for the others)."""
        pending = self._pending.get(name)
        if pending is None:
            pending = asyncio.ensure_future(lookup())
            self._pending[name] = pending
            pending.add_done_callback(partial(self._settled, name, self._epoch))
        answer: T = await asyncio.shield(pending)
        return answer

    def _settled(self, name: str, epoch: int, done: asyncio.Future[Any]) -> None:
        if epoch == self._epoch:
            del self._pending[name]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have been cancelled

    def forget(self) -> None:
        """A key was created or revoked here: look everything up again."""
        self._cache.clear()
        self._open = None
        self._pending = {}
        self._epoch += 1

    async def flush(self) -> None:
        """Write the collected ``last_used_at`` times."""
        used, self._used = self._used, {}
        try:
            await self._keys.touch(used)
        except Exception:  # a busy database must not lose requests; the times are advisory
            log.warning("could not record when %d API keys were last used", len(used))

    async def flush_every(self, seconds: float) -> None:
        try:
            while True:
                await asyncio.sleep(seconds)
                await self.flush()
        finally:
            await asyncio.shield(self.flush())
