"""The key store and the usage aggregates on SQLite and PostgreSQL: keys found by the hash of
their secret, revoked, touched in batches; usage grouped by key, model and UTC day; the load
the per-key limits read (active jobs, images since midnight)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.db import BACKENDS, FakeClock, SequentialIds, database_url

from imagegen.auth.keys import KeyLimits, NewKey, hash_secret, new_secret
from imagegen.db.keys import SqlKeyStore
from imagegen.db.store import GenerationStore, open_store
from imagegen.db.usage import SqlUsage
from imagegen.errors import InvalidRequest, NotFound
from imagegen.models import GenerationRequest, StoredImage
from imagegen.usage import GroupBy, UsageQuery

START = datetime(2030, 1, 2, 23, 0, tzinfo=UTC)
IMAGE = StoredImage("ab/cd.png", "image/png", 8, 8, 10)


def request(images: int = 1, model: str = "flux") -> GenerationRequest:
    return GenerationRequest(model=model, prompt="p", num_images=images, width=8, height=8)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GenerationStore]:
    async with database_url(request.param, tmp_path) as url:
        opened = await open_store(url, clock=FakeClock(START), new_id=SequentialIds())
        yield opened
        await opened.aclose()


def keys_of(store: GenerationStore) -> SqlKeyStore:
    ids = iter(f"key_{n:026d}" for n in range(1, 100))
    return SqlKeyStore(store.database, clock=lambda: START, new_id=lambda: next(ids))


async def succeed(store: GenerationStore, owner: str, images: int, cost: float | None) -> None:
    job = await store.create(request(images), provider="replicate", owner=owner)
    await store.mark_running(job.id)
    await store.mark_succeeded(
        job.id, images=[IMAGE] * images, provider_urls=[], images_missing=0, cost=cost
    )


async def test_keys_are_found_by_their_secret_and_revoked(store: GenerationStore) -> None:
    keys = keys_of(store)
    secret = new_secret()
    limits = KeyLimits(rpm=5, models=("flux",))
    created = await keys.create(NewKey("app", admin=False, limits=limits), secret)
    assert created.prefix == secret[:10]
    found = await keys.find(secret)
    assert found is not None
    assert (found.name, found.limits) == ("app", limits)
    assert await keys.find(new_secret()) is None
    with pytest.raises(InvalidRequest, match="a key named 'app' exists"):
        await keys.create(NewKey("app"), new_secret())
    assert await keys.active_count() == 1
    revoked = await keys.revoke("app")
    assert revoked.revoked
    assert await keys.active_count() == 0
    with pytest.raises(NotFound):
        await keys.revoke("ghost")
    assert hash_secret(secret) != secret


async def test_last_used_is_written_in_one_batch(store: GenerationStore) -> None:
    keys = keys_of(store)
    a = await keys.create(NewKey("a"), new_secret())
    b = await keys.create(NewKey("b"), new_secret())
    when = START + timedelta(minutes=5)
    await keys.touch({a.id: when, b.id: when})
    assert {k.name: k.last_used_at for k in await keys.list()} == {"a": when, "b": when}


async def test_usage_by_key_model_and_day(store: GenerationStore) -> None:
    await succeed(store, "key_a", 2, 0.5)
    await succeed(store, "key_a", 1, None)
    failed = await store.create(request(3, "sdxl"), provider="openai", owner="key_b")
    await store.mark_failed(failed.id, error="x", error_code="prediction_failed", cost=0.0)
    await store.create(request(4), provider="replicate", owner="key_b")  # still queued
    usage = SqlUsage(store.database)
    period = (START - timedelta(days=1), START + timedelta(days=1))
    by_key = {
        r.group: (r.images, r.generations, r.failures, r.cost, r.unpriced)
        for r in await usage.usage(UsageQuery(*period, GroupBy.KEY))
    }
    assert by_key == {"key_a": (3, 2, 0, 0.5, 1), "key_b": (0, 2, 1, 0.0, 1)}
    by_model = {
        r.group: r.generations for r in await usage.usage(UsageQuery(*period, GroupBy.MODEL))
    }
    assert by_model == {"flux": 3, "sdxl": 1}
    by_day = await usage.usage(UsageQuery(*period, GroupBy.DAY))
    assert [(r.group, r.generations) for r in by_day] == [("2030-01-02", 4)]
    mine = await usage.usage(UsageQuery(*period, GroupBy.KEY, owner="key_b"))
    assert [r.group for r in mine] == ["key_b"]


async def test_the_load_the_limits_read(store: GenerationStore) -> None:
    await succeed(store, "key_a", 2, None)
    queued = await store.create(request(3), provider="replicate", owner="key_a")
    await store.create(request(5), provider="replicate", owner="key_other")
    usage = SqlUsage(store.database)
    midnight = START.replace(hour=0)
    load = await usage.key_load("key_a", midnight)
    assert (load.active, load.images_today) == (1, 5)  # 2 delivered + 3 asked for
    tomorrow = await usage.key_load("key_a", midnight + timedelta(days=1))
    assert (tomorrow.active, tomorrow.images_today) == (1, 0)  # still running, a new day
    await store.mark_canceled(queued.id, reason="x")
    assert (await usage.key_load("key_a", midnight)).images_today == 2
