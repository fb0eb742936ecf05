"""Following a job (what the SSE route streams): from the start, joined late, run elsewhere."""

import asyncio

from tests.jobs.conftest import REQUEST, runner_for

from imagegen.jobs.follow import follow
from imagegen.jobs.limits import Limits, ProviderLimits


def summary(updates):
    return [
        (u.kind, u.generation.status.value if u.generation else u.progress)
        for u in updates
        if u.kind != "heartbeat"
    ]


async def collect(stream):
    return [update async for update in stream]


async def test_from_the_start_every_state_then_done(store, gated):
    limits = ProviderLimits({"gated": Limits(max_concurrency=1)})
    runner = runner_for(store, gated, limits=limits)
    blocker = await runner.submit(REQUEST)
    await gated.started.wait()
    job = await runner.submit(REQUEST)  # waits for the slot: queued
    updates = []

    async def read():
        async for update in follow(store, runner.events, job.id, heartbeat=5):
            updates.append(update)

    reader = asyncio.ensure_future(read())
    while not updates:  # it has read the job as it is now (queued) before anything changes
        await asyncio.sleep(0.001)
    gated.release.set()
    await asyncio.wait_for(reader, 5)
    assert summary(updates) == [
        ("state", "queued"),
        ("state", "running"),
        ("progress", 0.5),
        ("state", "succeeded"),
        ("done", "succeeded"),
    ]
    assert len(updates[-1].generation.images) == 2
    await runner.wait(blocker.id)


async def test_joining_late_gives_the_current_state_first(store, gated):
    runner = runner_for(store, gated)
    job = await runner.submit(REQUEST)
    await gated.started.wait()
    reader = asyncio.ensure_future(collect(follow(store, runner.events, job.id, heartbeat=5)))
    await asyncio.sleep(0.05)
    gated.release.set()
    updates = await asyncio.wait_for(reader, 5)
    assert summary(updates) == [
        ("state", "running"),
        ("state", "succeeded"),
        ("done", "succeeded"),
    ]


async def test_joining_a_finished_job_gives_its_state_and_done(store, gated):
    gated.release.set()
    runner = runner_for(store, gated)
    job = await runner.submit(REQUEST)
    await runner.wait(job.id)
    updates = await collect(follow(store, runner.events, job.id, heartbeat=5))
    assert summary(updates) == [("state", "succeeded"), ("done", "succeeded")]


async def test_a_job_run_elsewhere_is_followed_through_the_store_with_heartbeats(store, gated):
    runner = runner_for(store, gated)
    job = await store.create(REQUEST, provider="gated", lease_owner="instance-b")
    stream = follow(store, runner.events, job.id, heartbeat=0.02)
    assert (await anext(stream)).generation.status == "queued"
    assert (await anext(stream)).kind == "heartbeat"
    await store.mark_running(job.id)
    await store.mark_canceled(job.id, reason="stopped")
    rest = [update async for update in stream]
    assert summary(rest)[-2:] == [("state", "canceled"), ("done", "canceled")]
