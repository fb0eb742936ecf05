"""Job leases (crash recovery across replicas) on SQLite and PostgreSQL, through the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from imagegen.db import GenerationStore, open_store
from imagegen.models import GenerationRequest

from . import BACKENDS, FakeClock, SequentialIds, database_url

REQUEST = GenerationRequest(model="a/b", prompt="p", num_images=1, width=64, height=64)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_url(request.param, tmp_path) as value:
        yield value


@pytest.fixture
async def store(url: str, clock: FakeClock) -> AsyncIterator[GenerationStore]:
    opened = await open_store(url, clock=clock, new_id=SequentialIds())
    yield opened
    await opened.aclose()


async def test_a_lease_is_claimed_once_renewed_and_stolen_only_after_it_runs_out(
    store: GenerationStore, clock: FakeClock
) -> None:
    job = await store.create(
        REQUEST, provider="p", lease_owner="a", lease_expires_at=clock.now + timedelta(seconds=60)
    )
    later = clock.now + timedelta(seconds=120)
    assert not await store.claim(job.id, owner="b", until=later)
    assert await store.claim(job.id, owner="a", until=later)  # a restarted "a" takes it back
    assert not await store.claim(job.id, owner="a", until=later, include_own=False)
    clock.advance(100)
    assert await store.renew_leases("a", [job.id], until=clock.now + timedelta(seconds=60)) == 1
    clock.advance(59)
    assert not await store.claim(job.id, owner="b", until=later)
    clock.advance(2)
    assert await store.claim(job.id, owner="b", until=clock.now + timedelta(seconds=60))
    assert await store.renew_leases("a", [job.id], until=clock.now) == 0
    assert await store.renew_leases("b", [], until=clock.now) == 0


async def test_replicas_racing_for_an_orphan_claim_it_once(url: str, clock: FakeClock) -> None:
    stores = [await open_store(url, clock=clock) for _ in range(3)]
    try:
        job = await stores[0].create(
            REQUEST, provider="p", lease_owner="dead", lease_expires_at=clock.now
        )
        clock.advance(1)
        until = clock.now + timedelta(seconds=60)
        claims = await asyncio.gather(
            *(s.claim(job.id, owner=f"r{i}", until=until) for i, s in enumerate(stores))
        )
        assert sorted(claims) == [False, False, True]
    finally:
        for s in stores:
            await s.aclose()


async def test_finished_jobs_are_never_claimed(store: GenerationStore) -> None:
    job = await store.create(REQUEST, provider="p")
    await store.mark_canceled(job.id, reason="x")
    assert not await store.claim(job.id, owner="a", until=job.created_at)
