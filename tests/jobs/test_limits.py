"""Per-provider limits: GCRA create rate, concurrency slots, the bounded queue, deadlines."""

import asyncio

import pytest
from tests.jobs.conftest import REQUEST, runner_for

from imagegen.errors import DeadlineExceeded, QueueFull, StoreBusy
from imagegen.jobs.limits import Limits, ProviderLimiter, ProviderLimits, RateLimiter
from imagegen.jobs.observe import NoObserver
from imagegen.models import JobStatus


class FakeTime:
    """A clock that only ``sleep`` moves; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_gcra_lets_a_burst_through_then_spaces_tokens_at_the_rate():
    time = FakeTime()
    limiter = RateLimiter(60, 3, clock=time.clock, sleep=time.sleep)  # 1/s, burst 3
    granted = []
    for _ in range(6):
        await limiter.acquire(deadline=time.now + 100)
        granted.append(time.now - 1000.0)
    assert granted == [0, 0, 0, 1, 2, 3]


async def test_gcra_gives_tokens_now_only_all_at_once_and_only_without_a_wait():
    time = FakeTime()
    limiter = RateLimiter(60, 2, clock=time.clock, sleep=time.sleep)  # 1/s, burst 2
    assert not limiter.take_now(3)  # more than the burst: none taken
    assert limiter.take_now(2)
    assert not limiter.take_now(1)
    time.now += 1.0
    assert limiter.take_now(1)
    await limiter.acquire(deadline=time.now + 100)  # the bucket is empty: its turn is in 1 s
    assert time.sleeps == [1.0]


async def test_gcra_never_exceeds_burst_plus_rate_in_any_window():
    time = FakeTime()
    limiter = RateLimiter(600, 10, clock=time.clock, sleep=time.sleep)  # 10/s, burst 10
    times = []
    for _ in range(200):
        await limiter.acquire(deadline=time.now + 1000)
        times.append(time.now)
    for start in times:
        in_window = [t for t in times if start <= t < start + 1.0]
        assert len(in_window) <= 10 + 10  # burst + one second's worth


async def test_gcra_fails_at_once_when_the_turn_would_come_after_the_deadline():
    time = FakeTime()
    limiter = RateLimiter(60, 1, clock=time.clock, sleep=time.sleep)
    await limiter.acquire(deadline=time.now + 10)
    with pytest.raises(DeadlineExceeded, match="queue"):
        await limiter.acquire(deadline=time.now + 0.5)  # the next token is 1 s away
    assert time.sleeps == []  # it did not wait for nothing
    await limiter.acquire(deadline=time.now + 1.0)  # the failed waiter reserved nothing
    assert time.sleeps == [1.0]


async def test_gcra_hands_back_the_token_of_a_cancelled_waiter():
    limiter = RateLimiter(60, 1, clock=asyncio.get_running_loop().time, sleep=asyncio.sleep)
    await limiter.acquire(deadline=1e12)
    waiter = asyncio.ensure_future(limiter.acquire(deadline=1e12))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    with pytest.raises(DeadlineExceeded):  # the next turn is still ~1 s away, not ~2 s
        await limiter.acquire(deadline=asyncio.get_running_loop().time() + 0.5)
    assert limiter._tat is not None


async def test_queue_is_bounded_and_refusals_carry_retry_after():
    limiter = ProviderLimiter(Limits(max_concurrency=1, per_minute=60, burst=1, max_queue=2))
    loop = asyncio.get_running_loop()
    async with limiter.slot(limiter.admit(), loop.time() + 10):  # the one slot is taken
        tickets = [limiter.admit(), limiter.admit()]
        with pytest.raises(QueueFull) as full:
            limiter.admit()
        assert full.value.retry_after == 2.0  # two ahead at one a second
        assert limiter.admit(force=True)  # a recovered job is never refused
        tickets[0].leave()
        tickets[0].leave()  # idempotent
        assert limiter.waiting == 2
    assert limiter.admit()  # a freed slot makes room


async def test_an_empty_queue_bound_still_admits_jobs_that_get_a_slot_at_once():
    limiter = ProviderLimiter(Limits(max_concurrency=2, max_queue=0))
    first, second = limiter.admit(), limiter.admit()
    with pytest.raises(QueueFull):
        limiter.admit()
    first.leave()
    second.leave()
    assert ProviderLimiter(Limits(max_concurrency=0, max_queue=0)).admit()  # no limit, no queue


async def test_a_job_waiting_for_a_slot_honours_its_deadline():
    limiter = ProviderLimiter(Limits(max_concurrency=1))
    loop = asyncio.get_running_loop()
    async with limiter.slot(limiter.admit(), loop.time() + 10):
        with pytest.raises(DeadlineExceeded):
            async with limiter.slot(limiter.admit(), loop.time() + 0.05):
                pytest.fail("got a slot that was taken")
    assert limiter.waiting == 0
    async with limiter.slot(limiter.admit(), loop.time() + 0.05):
        pass  # the slot came back


async def test_a_slot_taken_at_admission_is_the_one_the_job_runs_in():
    limiter = ProviderLimiter(Limits(max_concurrency=1))
    loop = asyncio.get_running_loop()
    ticket = limiter.admit()
    assert await limiter.take_free(ticket)
    assert ticket.holds_slot
    assert not limiter.free()
    other = limiter.admit()
    assert not await limiter.take_free(other)  # none left: that job is written queued
    assert not other.holds_slot
    async with limiter.slot(ticket, loop.time() - 1):  # no wait, so no deadline to miss
        assert not ticket.holds_slot
        assert limiter.room(5) == 0
        with pytest.raises(DeadlineExceeded):
            async with limiter.slot(other, loop.time() + 0.05):
                pytest.fail("got a slot that was taken")
    assert limiter.free()
    assert limiter.room(5) == 1
    assert limiter.waiting == 0


async def test_a_slot_taken_at_admission_comes_back_when_the_job_never_runs():
    limiter = ProviderLimiter(Limits(max_concurrency=1))
    ticket = limiter.admit()
    assert await limiter.take_free(ticket)
    ticket.leave()  # its write failed, say
    ticket.leave()
    assert limiter.free()
    assert limiter.waiting == 0
    unlimited = ProviderLimiter(Limits())
    free = unlimited.admit()
    assert await unlimited.take_free(free)
    assert free.holds_slot
    free.leave()
    assert unlimited.free()
    assert unlimited.waiting == 0


# --- through the runner ---


async def test_a_job_with_a_free_slot_is_written_running_and_one_without_queued(store, gated):
    limits = ProviderLimits({"gated": Limits(max_concurrency=1)})
    runner = runner_for(store, gated, limits=limits)
    first = await runner.submit(REQUEST)
    assert first.status is JobStatus.RUNNING  # the slot was free: one write
    assert (await store.get(first.id)).status is JobStatus.RUNNING
    second = await runner.submit(REQUEST)
    assert second.status is JobStatus.QUEUED  # it waits for the slot
    await gated.started.wait()
    assert (await store.get(second.id)).status is JobStatus.QUEUED
    with runner.events.subscribe(second.id) as listener:
        gated.release.set()
        assert (await runner.wait(first.id)).status is JobStatus.SUCCEEDED
        done = await runner.wait(second.id)
        heard = []
        while (event := await listener.next(0.01)) is not None:
            if event.generation is not None:
                heard.append(event.generation.status)
    assert done.status is JobStatus.SUCCEEDED
    assert done.started_at is not None
    assert heard == [JobStatus.RUNNING, JobStatus.SUCCEEDED]  # its start written when it came
    assert limits("gated").free()
    assert limits("gated").waiting == 0
    third = await runner.submit(REQUEST)
    assert third.status is JobStatus.RUNNING  # the slot came back
    assert (await runner.wait(third.id)).status is JobStatus.SUCCEEDED


async def test_a_job_refused_when_written_gives_its_slot_back(store, gated):
    from tests.jobs.test_overload import BusyStore

    limits = ProviderLimits({"gated": Limits(max_concurrency=1)})
    runner = runner_for(BusyStore(store, create=1), gated, limits=limits)
    with pytest.raises(StoreBusy):
        await runner.submit(REQUEST)
    assert limits("gated").free()
    assert limits("gated").waiting == 0
    job = await runner.submit(REQUEST)
    assert job.status is JobStatus.RUNNING
    gated.release.set()
    assert (await runner.wait(job.id)).status is JobStatus.SUCCEEDED


async def test_a_full_queue_refuses_at_submit_and_stores_nothing(store, gated):
    limits = ProviderLimits({"gated": Limits(max_concurrency=1, max_queue=1)})
    runner = runner_for(store, gated, limits=limits)
    running = await runner.submit(REQUEST)
    await gated.started.wait()
    queued = await runner.submit(REQUEST)
    with pytest.raises(QueueFull):
        await runner.submit(REQUEST)
    page, _ = await store.list(limit=10)
    assert {g.id for g in page} == {running.id, queued.id}
    gated.release.set()
    for job in (running, queued):
        assert (await runner.wait(job.id)).status is JobStatus.SUCCEEDED
    assert (await runner.wait((await runner.submit(REQUEST)).id)).status is JobStatus.SUCCEEDED


class QueueWatch(NoObserver):
    """Records every change of the queued gauge and what it stood at."""

    def __init__(self) -> None:
        self.level = 0
        self.changes: list[int] = []

    def queued(self, provider: str, delta: int) -> None:
        self.level += delta
        self.changes.append(self.level)


async def test_the_queued_gauge_counts_a_job_only_while_it_waits_for_a_slot(store, gated):
    watch = QueueWatch()
    limits = ProviderLimits({"gated": Limits(max_concurrency=1)})
    runner = runner_for(store, gated, limits=limits, observer=watch)
    running = await runner.submit(REQUEST)
    await gated.started.wait()
    assert watch.changes == []  # a free slot: taken at once, never queued
    assert limits("gated").free() is False
    waiting = await runner.submit(REQUEST)
    while not watch.changes:
        await asyncio.sleep(0)
    assert watch.level == 1  # this one waits for the slot
    gated.release.set()
    for job in (running, waiting):
        assert (await runner.wait(job.id)).status is JobStatus.SUCCEEDED
    assert watch.changes == [1, 0]
    assert limits("gated").free() is True


async def test_a_queued_job_past_its_deadline_fails_with_504s_error_and_never_runs(store, gated):
    limits = ProviderLimits({"gated": Limits(max_concurrency=1)})
    runner = runner_for(store, gated, limits=limits)
    first = await runner.submit(REQUEST, deadline_seconds=10)
    await gated.started.wait()
    late = await runner.submit(REQUEST, deadline_seconds=0.1)
    with pytest.raises(DeadlineExceeded, match="queue"):
        await runner.wait(late.id)
    row = await store.get(late.id)
    assert (row.status, row.error_code, row.started_at) == (
        JobStatus.FAILED,
        "deadline_exceeded",
        None,
    )
    assert gated.created == ["p1"]
    gated.release.set()
    assert (await runner.wait(first.id)).status is JobStatus.SUCCEEDED


async def test_fan_out_takes_one_create_token_per_prediction(store, gated):
    time = FakeTime()
    time.now = asyncio.get_running_loop().time()  # deadlines are on the loop's clock
    gated.predictions = 3
    gated.release.set()
    limits = ProviderLimits(
        {"gated": Limits(per_minute=60, burst=2)}, clock=time.clock, sleep=time.sleep
    )
    runner = runner_for(store, gated, limits=limits, timeout=3600)
    for _ in range(2):
        await runner.wait((await runner.submit(REQUEST)).id)
    assert len(gated.created) == 6
    assert time.sleeps == [1.0, 1.0, 1.0, 1.0]  # 2 at once, then one a second


async def test_a_job_cancelled_before_it_ever_ran_gives_its_slot_back(store, gated):
    limits = ProviderLimits({"gated": Limits(max_concurrency=1)})
    runner = runner_for(store, gated, limits=limits)
    job = await runner.submit(REQUEST)
    assert job.status is JobStatus.RUNNING
    task = runner._tasks[job.id]
    task.cancel()  # before its first step: none of its code ever runs
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)  # its done callbacks
    assert task.cancelled()
    assert limits("gated").free()
    assert limits("gated").waiting == 0
