"""Job leases (crash recovery across replicas) on SQLite and PostgreSQL, through the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from imagegen.db import GenerationStore, open_store
from imagegen.errors import LeaseLost, NotFound
from imagegen.models import (
    GenerationRequest,
    JobStatus,
    PendingCreate,
    PredictionRecord,
    StoredImage,
)

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


async def test_writes_fenced_by_a_lease_taken_over_raise_lease_lost_and_write_nothing(
    store: GenerationStore, clock: FakeClock
) -> None:
    job = await store.create(
        REQUEST, provider="p", lease_owner="a", lease_expires_at=clock.now + timedelta(seconds=5)
    )
    await store.mark_running(job.id, holder="a")  # while "a" holds it, its writes apply
    clock.advance(10)  # "a" stalled past its lease; "b" adopts the job
    assert await store.claim(job.id, owner="b", until=clock.now + timedelta(seconds=5))
    pending = PendingCreate("a/b", {"prompt": "p"}, 1)
    record = PredictionRecord("p1", {"prompt": "p"}, 1)
    with pytest.raises(LeaseLost):
        await store.begin_create(job.id, pending, holder="a", until=clock.now)
    with pytest.raises(LeaseLost):
        await store.add_prediction(job.id, record, holder="a")
    with pytest.raises(LeaseLost):
        await store.adopt_prediction(job.id, record, holder="a")
    with pytest.raises(LeaseLost):
        await store.mark_failed(job.id, error="x", error_code="internal_error", holder="a")
    with pytest.raises(LeaseLost):
        await store.mark_succeeded(
            job.id, images=[], provider_urls=[], images_missing=0, holder="a"
        )
    with pytest.raises(LeaseLost):  # the predictions it records go back with it
        await store.mark_succeeded(
            job.id,
            images=[],
            provider_urls=[],
            images_missing=0,
            holder="a",
            predictions=[record],
        )
    current = await store.get(job.id)
    assert current.status is JobStatus.RUNNING
    assert not current.predictions
    assert await store.pending_creates(job.id) == []
    # The adopter's writes apply; a user's cancel (no holder) applies whoever holds it.
    await store.begin_create(job.id, pending, holder="b", until=clock.now + timedelta(seconds=9))
    assert len(await store.pending_creates(job.id)) == 1
    assert (await store.mark_canceled(job.id, reason="user")).status is JobStatus.CANCELED


async def test_fenced_writes_of_the_holder_record_the_create_and_its_prediction(
    store: GenerationStore, clock: FakeClock
) -> None:
    job = await store.create(
        REQUEST, provider="p", lease_owner="a", lease_expires_at=clock.now + timedelta(seconds=5)
    )
    await store.mark_running(job.id, holder="a")
    inputs = {"prompt": "p", "seed": 1}
    await store.begin_create(job.id, PendingCreate("a/b", inputs, 1), holder="a")
    await store.begin_create(job.id, PendingCreate("a/b", {"prompt": "other"}, 1), holder="a")
    await store.add_prediction(job.id, PredictionRecord("p1", inputs, 1), holder="a")
    await store.add_prediction(job.id, PredictionRecord("p1", inputs, 1), holder="a")  # again

    current = await store.get(job.id)
    assert [(p.prediction_id, dict(p.inputs)) for p in current.predictions] == [("p1", inputs)]
    assert [dict(p.inputs) for p in await store.pending_creates(job.id)] == [{"prompt": "other"}]
    # Only the lease's own columns changed: the job is as it was, its lease where it was.
    assert current.status is JobStatus.RUNNING
    assert current.request == job.request
    assert current.updated_at == job.updated_at
    assert await store.held_elsewhere("b", [job.id]) == {job.id}


async def test_a_fenced_success_with_images_applies_only_for_the_holder(
    store: GenerationStore, clock: FakeClock
) -> None:
    job = await store.create(
        REQUEST, provider="p", lease_owner="a", lease_expires_at=clock.now + timedelta(seconds=5)
    )
    await store.mark_running(job.id, holder="a")
    clock.advance(10)
    assert await store.claim(job.id, owner="b", until=clock.now + timedelta(seconds=5))
    images = [
        StoredImage("k/1.png", "image/png", 64, 64, 10, "https://u/1.png", "a cat ✓"),
        StoredImage("k/2.png", "image/png", 64, 32, 2**33),
    ]
    with pytest.raises(LeaseLost):
        await store.mark_succeeded(
            job.id, images=images, provider_urls=["u"], images_missing=0, holder="a"
        )
    assert (await store.get(job.id)).images == ()

    done = await store.mark_succeeded(
        job.id, images=images, provider_urls=["u"], images_missing=1, holder="b"
    )
    assert done.status is JobStatus.SUCCEEDED
    assert done == await store.get(job.id)
    assert done.images == tuple(images)


async def test_fenced_writes_on_a_job_that_does_not_exist_are_not_found(
    store: GenerationStore, clock: FakeClock
) -> None:
    with pytest.raises(NotFound):
        await store.begin_create(
            "gen_missing", PendingCreate("a/b", {}, 1), holder="a", until=clock.now
        )
    with pytest.raises(NotFound):
        await store.add_prediction("gen_missing", PredictionRecord("p1", {}, 1), holder="a")


async def test_a_fenced_create_extends_the_lease_so_no_one_can_claim_it_meanwhile(
    store: GenerationStore, clock: FakeClock
) -> None:
    job = await store.create(
        REQUEST, provider="p", lease_owner="a", lease_expires_at=clock.now + timedelta(seconds=1)
    )
    pending = PendingCreate("a/b", {"prompt": "p"}, 1)
    await store.begin_create(job.id, pending, holder="a", until=clock.now + timedelta(seconds=30))
    clock.advance(10)
    assert not await store.claim(job.id, owner="b", until=clock.now + timedelta(seconds=5))
    assert await store.held_elsewhere("a", [job.id]) == set()
    clock.advance(30)
    assert await store.claim(job.id, owner="b", until=clock.now + timedelta(seconds=5))
    assert await store.held_elsewhere("a", [job.id]) == {job.id}


async def test_claim_free_takes_the_oldest_free_or_expired_jobs_up_to_the_room_given(
    store: GenerationStore, clock: FakeClock
) -> None:
    held = await store.create(
        REQUEST, provider="p", lease_owner="a", lease_expires_at=clock.now + timedelta(seconds=60)
    )
    free = [await store.create(REQUEST, provider="p") for _ in range(3)]
    expired = await store.create(
        REQUEST, provider="p", lease_owner="a", lease_expires_at=clock.now - timedelta(seconds=1)
    )
    until = clock.now + timedelta(seconds=60)
    first = await store.claim_free("b", until=until, limit=2, exclude=[free[0].id])
    assert [job.id for job in first] == [free[1].id, free[2].id]
    rest = await store.claim_free("c", until=until, limit=10)
    assert [job.id for job in rest] == [free[0].id, expired.id]
    assert await store.claim_free("c", until=until, limit=10) == []
    assert not await store.claim(held.id, owner="c", until=until, include_own=False)


async def test_replicas_claiming_free_jobs_at_once_take_each_once(
    url: str, clock: FakeClock
) -> None:
    stores = [await open_store(url, clock=clock) for _ in range(3)]
    try:
        jobs = [await stores[0].create(REQUEST, provider="p") for _ in range(30)]
        until = clock.now + timedelta(seconds=60)
        taken = await asyncio.gather(
            *(
                store.claim_free(f"r{index}", until=until, limit=4)
                for _ in range(4)
                for index, store in enumerate(stores)
            )
        )
        ids = [job.id for batch in taken for job in batch]
        assert len(ids) == len(set(ids)) == len(jobs)
    finally:
        for store in stores:
            await store.aclose()
