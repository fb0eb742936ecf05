"""``imagegen keys ...`` and the serve-time check, straight on the database ``serve`` uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from imagegen.auth.exposure import anonymous_allowed, refusal
from imagegen.auth.keys import ApiKey, NewKey, new_secret
from imagegen.config import Settings
from imagegen.db.keys import SqlKeyStore
from imagegen.db.store import open_store
from imagegen.db.usage import SqlUsage
from imagegen.keys_usage import usage_by_key
from imagegen.services import database_pool, key_store
from imagegen.usage import UsageRow


@dataclass(frozen=True, slots=True)
class KeyReport:
    key: ApiKey
    today: UsageRow | None
    month: UsageRow | None


@asynccontextmanager
async def stores(settings: Settings) -> AsyncIterator[tuple[SqlKeyStore, SqlUsage]]:
    store = await open_store(settings.resolved_database_url, pool=database_pool(settings))
    try:
        yield key_store(store.database), SqlUsage(store.database)
    finally:
        await store.aclose()


async def create(settings: Settings, new: NewKey) -> tuple[ApiKey, str]:
    """The stored key and its secret (shown once)."""
    secret = new_secret()
    async with stores(settings) as (keys, _):
        return await keys.create(new, secret), secret


async def revoke(settings: Settings, name: str) -> ApiKey:
    async with stores(settings) as (keys, _):
        return await keys.revoke(name)


async def report(settings: Settings) -> list[KeyReport]:
    async with stores(settings) as (keys, usage):
        today, month = await usage_by_key(usage, datetime.now(UTC))
        return [KeyReport(k, today.get(k.id), month.get(k.id)) for k in await keys.list()]


async def exposure_problem(settings: Settings) -> str | None:
    """Why ``serve`` must not start (bound openly with no key), or None."""
    if anonymous_allowed(settings):
        return None
    async with stores(settings) as (keys, _):
        return refusal(settings) if await keys.active_count() == 0 else None
