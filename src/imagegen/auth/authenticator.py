"""Who sent a request: ``Authorization: Bearer ig_...`` looked up by the hash of its secret.

Each replica keeps what it looked up for ``cache_seconds`` (1 s by default, 0 for none), so a
key revoked anywhere stops working everywhere within that time; a revoke on this replica takes
effect at once (``forget``). Unknown secrets are cached as unknown too, so a flood of bad keys
cannot become a flood of queries. ``last_used_at`` is collected in memory and written by
``flush`` (the caller runs ``flush_every``), one transaction for all keys, never per request.

Anonymous requests are served only while no key exists (``active_count`` is 0) and the server
allows it (bound to loopback, or ``IMAGEGEN_ALLOW_ANONYMOUS``); once a key exists, every request
needs one. Revoking every key does not reopen a server bound openly, only one that allows
anonymous access.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from imagegen.auth.keys import ApiKey, hash_secret, looks_like_secret
from imagegen.auth.principal import ANONYMOUS, Principal
from imagegen.errors import Unauthenticated

log = logging.getLogger(__name__)

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
        key = await self._keys.find(secret)
        if self._ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, key)
        return key

    async def _anonymous_ok(self) -> bool:
        if not self._anonymous_allowed:
            return False
        now = self._monotonic()
        if self._open is None or self._open[0] <= now:
            self._open = (now + self._ttl, await self._keys.active_count() == 0)
        return self._open[1]

    def forget(self) -> None:
        """A key was created or revoked here: look everything up again."""
        self._cache.clear()
        self._open = None

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
