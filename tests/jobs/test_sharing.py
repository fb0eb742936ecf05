"""Claiming work is a database operation: on a shared database a job submitted to an instance
with no room waits in the database, unleased, and whichever instance has room runs it; on SQLite
the one process queues it in memory as before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.db import postgres_database
from tests.jobs.conftest import REQUEST, runner_for
from tests.jobs.fakes import GatedProvider

from imagegen.db import GenerationStore, open_store
from imagegen.errors import QueueFull
from imagegen.jobs.limits import Limits, ProviderLimits
from imagegen.models import JobStatus


def one_slot() -> ProviderLimits:
    return ProviderLimits({"gated": Limits(max_concurrency=1, max_queue=10)})


@pytest.fixture
async def pg_stores() -> AsyncIterator[list[GenerationStore]]:
    async with postgres_database() as url:
        first = await open_store(url)
        second = await open_store(url)
        yield [first, second]
        await first.aclose()
        await second.aclose()


async def test_a_job_submitted_where_there_is_no_room_runs_on_the_instance_that_has_some(
    pg_stores, runners
):
    busy_provider, idle_provider = GatedProvider(), GatedProvider()
    busy = runner_for(pg_stores[0], busy_provider, owner="a", limits=one_slot(), share_queue=True)
    idle = runner_for(
        pg_stores[1],
        idle_provider,
        owner="b",
        limits=one_slot(),
        share_queue=True,
        claim_interval=0.05,
    )
    runners.extend([busy, idle])
    await busy.start()
    await idle.start()
    first = await busy.submit(REQUEST)  # takes a's one slot, and holds it
    await asyncio.wait_for(busy_provider.started.wait(), 10)
    second = await busy.submit(REQUEST)
    assert (await pg_stores[0].get(second.id)).status is JobStatus.QUEUED
    await asyncio.wait_for(idle_provider.started.wait(), 10)  # b claimed it: b had room
    idle_provider.release.set()
    done = await asyncio.wait_for(busy.wait(second.id), 10)  # a follows it through the store
    assert done.status is JobStatus.SUCCEEDED
    assert len(idle_provider.created) == 1
    assert len(busy_provider.created) == 1  # a ran only its first job
    busy_provider.release.set()
    assert (await asyncio.wait_for(busy.wait(first.id), 10)).status is JobStatus.SUCCEEDED


async def test_a_job_waiting_in_the_database_is_claimed_by_its_own_instance_once_a_slot_frees(
    pg_stores, runners
):
    provider = GatedProvider()
    alone = runner_for(
        pg_stores[0], provider, owner="a", limits=one_slot(), share_queue=True, claim_interval=30
    )
    runners.append(alone)
    await alone.start()
    first = await alone.submit(REQUEST)
    second = await alone.submit(REQUEST)
    await asyncio.wait_for(provider.started.wait(), 10)
    provider.release.set()  # the first ends; its slot goes to the job waiting in the database
    done = await asyncio.wait_for(alone.wait(second.id), 10)  # long before claim_interval
    assert done.status is JobStatus.SUCCEEDED
    assert (await alone.wait(first.id)).status is JobStatus.SUCCEEDED


async def test_on_sqlite_a_full_instance_queues_in_memory_and_runs_its_jobs_itself(
    tmp_path: Path, runners
):
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}")
    try:
        provider = GatedProvider()
        alone = runner_for(store, provider, owner="a", limits=one_slot())
        runners.append(alone)
        await alone.start()
        await alone.submit(REQUEST)
        second = await alone.submit(REQUEST)
        assert alone.in_flight() == 2  # both are this process's tasks, the second queued
        assert (await store.get(second.id)).status is JobStatus.QUEUED
        provider.release.set()
        assert (await asyncio.wait_for(alone.wait(second.id), 10)).status is JobStatus.SUCCEEDED
        await alone.aclose()
    finally:
        await store.aclose()


async def test_a_restart_takes_its_own_jobs_back_but_only_as_many_waiting_ones_as_it_has_room_for(
    pg_stores, runners
):
    store = pg_stores[0]
    own = await store.create(
        REQUEST, provider="gated", lease_owner="a", lease_expires_at=datetime.now(UTC)
    )
    waiting = [await store.create(REQUEST, provider="gated") for _ in range(3)]
    provider = GatedProvider()
    restarted = runner_for(
        store, provider, owner="a", limits=one_slot(), share_queue=True, claim_interval=30
    )
    runners.append(restarted)
    assert await restarted.start() == 1  # its own job; its one slot is taken then
    assert restarted.in_flight() == 1
    provider.release.set()
    assert (await asyncio.wait_for(restarted.wait(own.id), 10)).status is JobStatus.SUCCEEDED
    for job in waiting:  # then the waiting ones, one slot at a time, as each ends
        done = await asyncio.wait_for(restarted.wait(job.id), 10)
        assert done.status is JobStatus.SUCCEEDED


async def test_jobs_waiting_in_the_database_are_bounded_like_a_queue(pg_stores, runners):
    provider = GatedProvider()
    limits = ProviderLimits({"gated": Limits(max_concurrency=1, max_queue=2)})
    busy = runner_for(pg_stores[0], provider, owner="a", limits=limits, share_queue=True)
    runners.append(busy)
    await busy.start()
    await busy.submit(REQUEST)  # runs here
    await busy.submit(REQUEST)  # waits in the database
    await busy.submit(REQUEST)
    with pytest.raises(QueueFull) as refused:
        await busy.submit(REQUEST)
    assert refused.value.retry_after is not None
    provider.release.set()
