"""A database at capacity (``StoreBusy``): final writes are retried, a job is never left behind for
good, and a client told to come back (503) can."""

import asyncio
from dataclasses import dataclass, field

import pytest
from tests.db import postgres_database
from tests.fakes.scripted_provider import ScriptedProvider
from tests.jobs.conftest import REQUEST, runner_for
from tests.jobs.fakes import CreatesOnly

import imagegen.jobs.runner
from imagegen.db import PoolSettings, open_store
from imagegen.errors import ImagegenError, StoreBusy
from imagegen.jobs.protocols import Idempotency
from imagegen.jobs.records import WebhookEvent, WebhookTarget
from imagegen.models import (
    GenerationRequest,
    JobStatus,
    PredictionRecord,
    ProviderImage,
    ProviderResult,
)
from imagegen.providers.base import GenerationContext

START_HOOK = WebhookTarget("https://hooks.example.com/in", (WebhookEvent.START,))


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
    # Asking for the start message, the job is written queued and its start on its own.
    job = await runner.submit(REQUEST, webhook=START_HOOK)
    assert job.status is JobStatus.QUEUED

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
    first = await runner.submit(REQUEST, idempotency=key, webhook=START_HOOK)
    with pytest.raises(StoreBusy):
        await runner.wait(first.id)

    again = await runner.submit(REQUEST, idempotency=key)

    assert again.id != first.id
    assert (await runner.wait(again.id)).status is JobStatus.SUCCEEDED
    assert (await store.get(first.id)).idempotency_key is None


async def test_a_prediction_the_database_would_not_record_at_first_is_recorded_again(store):
    busy = BusyStore(store, add_prediction=2)
    runner = runner_for(busy, ScriptedProvider(), store_retry_delays=(0, 0, 0))
    job = await runner.submit(REQUEST)

    done = await runner.wait(job.id)

    assert done.status is JobStatus.SUCCEEDED
    assert busy.calls["add_prediction"] == 3
    assert [p.prediction_id for p in done.predictions] == ["p1"]


@dataclass
class PaidProvider(CreatesOnly):
    """Each create is paid for as soon as it is sent (``sent``); its prediction is recorded
    once ``answer`` is set (the reply came), then its image is returned."""

    name: str = "paid"
    sent: asyncio.Event = field(default_factory=asyncio.Event)
    answer: asyncio.Event = field(default_factory=asyncio.Event)
    hold: float = 0.0
    created: list[str] = field(default_factory=list)

    async def generate(
        self, request: GenerationRequest, context: GenerationContext
    ) -> ProviderResult:
        prediction_id = f"p{len(self.created) + 1}"
        self.created.append(prediction_id)
        self.sent.set()
        await asyncio.sleep(self.hold)
        await self.answer.wait()
        await context.on_prediction(PredictionRecord(prediction_id, {"p": request.prompt}, 1))
        image = ProviderImage(f"https://replicate.delivery/x/{prediction_id}.png", prediction_id)
        return ProviderResult(images=(image,), requested=1)


ONE = GenerationRequest(model="owner/model", prompt="cat", num_images=1, width=512, height=512)


async def test_a_paid_job_whose_writes_wait_past_the_pool_timeout_ends_with_its_image():
    """PostgreSQL, a pool of one (and one overflow) with a 0.2 s timeout held by something else
    for longer: the job's writes wait for a connection; nothing paid for is lost."""
    async with postgres_database() as url:
        store = await open_store(url, pool=PoolSettings(size=1, timeout=0.2))
        provider = PaidProvider()
        runner = runner_for(store, provider, store_retry_delays=())  # no retry hides a failure
        try:
            job = await runner.submit(ONE)
            await provider.sent.wait()
            async with store.engine.connect(), store.engine.connect():
                provider.answer.set()
                await asyncio.sleep(0.8)
            done = await asyncio.wait_for(runner.wait(job.id), 10)
            stored = await store.get(job.id)
        finally:
            await runner.aclose()
            await store.aclose()
    assert done.status is JobStatus.SUCCEEDED
    assert stored == done
    assert [p.prediction_id for p in stored.predictions] == ["p1"]
    assert [image.source_url for image in stored.images] == ["https://replicate.delivery/x/p1.png"]


async def test_many_jobs_on_a_tiny_postgres_pool_each_end_with_their_image_or_are_refused():
    """80 jobs at once on a pool of one connection (and one overflow) with a 0.1 s timeout: a job
    may be refused before it is written (503), but every job admitted ends succeeded with its
    one prediction and its image, however long its writes waited."""
    async with postgres_database() as url:
        store = await open_store(url, pool=PoolSettings(size=1, timeout=0.1))
        provider = PaidProvider(hold=0.1)
        provider.answer.set()
        runner = runner_for(store, provider, store_retry_delays=())
        try:
            submitted = await asyncio.gather(
                *(runner.submit(ONE) for _ in range(80)), return_exceptions=True
            )
            admitted = [job for job in submitted if not isinstance(job, BaseException)]
            refused = [error for error in submitted if isinstance(error, BaseException)]
            ended = await asyncio.wait_for(
                asyncio.gather(*(runner.wait(job.id) for job in admitted), return_exceptions=True),
                60,
            )
            rows, _ = await store.list(limit=100)
        finally:
            await runner.aclose()
            await store.aclose()
    assert admitted, "none admitted: the test shows nothing"
    assert all(isinstance(error, StoreBusy) for error in refused), refused
    assert [e for e in ended if isinstance(e, BaseException)] == []
    assert sorted(job.id for job in rows) == sorted(job.id for job in admitted)
    assert all(job.status is JobStatus.SUCCEEDED for job in rows)
    assert all(len(job.predictions) == 1 and len(job.images) == 1 for job in rows)
    assert len(provider.created) == len(admitted)  # one paid create per job, none lost


async def test_a_waiter_on_a_job_run_elsewhere_looks_again_while_the_database_is_busy(
    store, gated, monkeypatch
):
    """The job is admitted (another instance runs it, maybe paid for already): a 503 now would
    have the client send it again, and pay again. The waiter reads the store again later."""
    monkeypatch.setattr(imagegen.jobs.runner, "WATCH_INTERVAL", 0.05)
    busy = BusyStore(store, get=3)
    runner = runner_for(busy, gated)
    job = await store.create(REQUEST, provider="gated", lease_owner="instance-b")
    waiting = asyncio.ensure_future(runner.wait(job.id))
    while busy.calls.get("get", 0) < 3 and not waiting.done():  # each read so far refused
        await asyncio.sleep(0.01)
    await store.mark_running(job.id)
    await store.mark_failed(job.id, error="on instance b", error_code="prediction_failed")

    with pytest.raises(ImagegenError, match="on instance b"):
        await asyncio.wait_for(waiting, 5)
    assert busy.calls["get"] >= 4
