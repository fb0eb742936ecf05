"""A database at capacity (``StoreBusy``): final writes are retried, a job is never left behind for
good, and a client told to come back (503) can."""

import asyncio

import pytest
from tests.fakes.scripted_provider import ScriptedProvider
from tests.jobs.conftest import REQUEST, runner_for

from imagegen.errors import StoreBusy
from imagegen.jobs.protocols import Idempotency
from imagegen.models import JobStatus


class BusyStore:
    """The real store, except that each method named in ``refusals`` raises ``StoreBusy`` on its
    next that-many calls."""

    def __init__(self, store, **refusals: int) -> None:
        self._store = store
        self.refusals = refusals
        self.calls: dict[str, int] = {}

    def __getattr__(self, name):
        method = getattr(self._store, name)
        if name not in self.refusals:
            return method

        async def call(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.refusals[name] > 0:
                self.refusals[name] -= 1
                raise StoreBusy("imagegen's database is at capacity")
            return await method(*args, **kwargs)

        return call


async def test_a_final_write_refused_for_capacity_is_written_again(store):
    busy = BusyStore(store, mark_succeeded=2)
    runner = runner_for(busy, ScriptedProvider(), store_retry_delays=(0, 0, 0))
    job = await runner.submit(REQUEST)

    done = await runner.wait(job.id)

    assert done.status is JobStatus.SUCCEEDED
    assert busy.calls["mark_succeeded"] == 3
    assert await store.get(job.id) == done


async def test_a_failure_is_recorded_even_when_the_first_tries_are_refused(store):
    busy = BusyStore(store, mark_running=1, mark_failed=3)
    runner = runner_for(busy, ScriptedProvider(), store_retry_delays=(0, 0, 0))
    job = await runner.submit(REQUEST)

    with pytest.raises(StoreBusy):  # a 503: the client may come back
        await runner.wait(job.id)

    failed = await store.get(job.id)
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, "store_busy")


async def test_a_success_the_database_will_not_record_is_settled_by_recovery(store, gated, runners):
    gated.release.set()
    busy = BusyStore(store, mark_succeeded=4)  # the first try and all three retries
    runner = runner_for(busy, gated, store_retry_delays=(0, 0, 0), lease_seconds=1.5)
    runners.append(runner)
    await runner.start()
    job = await runner.submit(REQUEST)

    with pytest.raises(StoreBusy):
        await runner.wait(job.id)
    left = await store.get(job.id)
    assert left.status is JobStatus.RUNNING  # not failed: the images exist upstream
    assert gated.created == ["p1"]
    assert [p.prediction_id for p in left.predictions] == ["p1"]

    # Nobody renews its lease now; once it runs out, the sweep adopts and resumes the job.
    async def settled():
        while not (current := await store.get(job.id)).status.is_terminal:
            await asyncio.sleep(0.02)
        return current

    done = await asyncio.wait_for(settled(), 5)
    assert done.status is JobStatus.SUCCEEDED
    assert gated.resumed == ["p1"]  # polled, not created again


async def test_a_retry_with_the_key_of_a_job_refused_for_capacity_runs_anew(store):
    busy = BusyStore(store, mark_running=1)
    runner = runner_for(busy, ScriptedProvider(), store_retry_delays=())
    key = Idempotency("key-1", "sha256:request")
    first = await runner.submit(REQUEST, idempotency=key)
    with pytest.raises(StoreBusy):
        await runner.wait(first.id)

    again = await runner.submit(REQUEST, idempotency=key)

    assert again.id != first.id
    assert (await runner.wait(again.id)).status is JobStatus.SUCCEEDED
    assert (await store.get(first.id)).idempotency_key is None
