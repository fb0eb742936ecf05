"""A prediction whose create reply was final is handed over (``record_finished``) and recorded
while its outputs are stored: never after the job's end state, and its failure is the job's."""

import asyncio
from dataclasses import dataclass, field

import pytest
from tests.jobs.conftest import runner_for
from tests.jobs.fakes import CreatesOnly
from tests.jobs.test_overload import BusyStore

from imagegen.errors import Canceled, ImagegenError, PredictionFailed, StoreBusy
from imagegen.models import (
    GenerationRequest,
    JobStatus,
    PredictionRecord,
    ProviderImage,
    ProviderResult,
    StoredImage,
)
from imagegen.providers.base import GenerationContext

ONE = GenerationRequest(model="owner/model", prompt="cat", num_images=1, width=512, height=512)


@dataclass
class FinalProvider(CreatesOnly):
    """Answers each generation at once, as a sync-mode create reply with its file does: the
    prediction is handed to ``record_finished`` (``on_prediction`` when there is none)."""

    name: str = "final"
    handed: list[str] = field(default_factory=list)
    error: ImagegenError | None = None  # raised after the prediction is handed over

    async def generate(
        self, request: GenerationRequest, context: GenerationContext
    ) -> ProviderResult:
        record = PredictionRecord("p1", {"prompt": request.prompt}, 1)
        if context.record_finished is None:
            await context.on_prediction(record)
        else:
            context.record_finished(record)
            self.handed.append(record.prediction_id)
        if self.error is not None:
            raise self.error
        image = ProviderImage("https://replicate.delivery/x/p1.png", "p1")
        return ProviderResult(images=(image,), requested=1)


class Log:
    """The real store, logging when a prediction's write and the job's end begin and end;
    ``hold`` keeps each prediction's write waiting until it is set."""

    def __init__(self, store) -> None:
        self._store = store
        self.log: list[str] = []
        self.hold = asyncio.Event()
        self.hold.set()

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def add_prediction(self, *args, **kwargs):
        self.log.append("recording")
        await self.hold.wait()
        new = await self._store.add_prediction(*args, **kwargs)
        self.log.append("recorded")
        return new

    async def mark_canceled(self, *args, **kwargs):
        self.log.append("canceling")
        return await self._store.mark_canceled(*args, **kwargs)

    async def mark_succeeded(self, *args, **kwargs):
        recording = [p.prediction_id for p in kwargs.get("predictions", ())]
        self.log.append(f"succeeding {recording}" if recording else "succeeding")
        self.told = [p.prediction_id for p in kwargs.get("recorded", ())]
        return await self._store.mark_succeeded(*args, **kwargs)


class SlowIngestor:
    """Stores each output once ``stored`` is set, noting that it started."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.stored = asyncio.Event()

    async def ingest(self, url: str) -> StoredImage:
        self.log.append("storing")
        await self.stored.wait()
        return StoredImage("k" * 64, "image/png", 1, 1, 4, source_url=url)


async def test_the_record_is_written_while_outputs_are_stored_and_before_the_end(store):
    logged = Log(store)
    logged.hold.clear()
    ingestor = SlowIngestor(logged.log)
    provider = FinalProvider()
    runner = runner_for(logged, provider, ingestor=ingestor)
    job = await runner.submit(ONE)
    waiting = asyncio.ensure_future(runner.wait(job.id))
    async with asyncio.timeout(5):
        while len(logged.log) < 2:
            await asyncio.sleep(0.001)
    assert sorted(logged.log) == ["recording", "storing"]  # both under way at once

    ingestor.stored.set()  # stored, but the record is not written yet: the job waits for it
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert (await store.get(job.id)).status is JobStatus.RUNNING

    logged.hold.set()
    done = await waiting
    assert done.status is JobStatus.SUCCEEDED
    assert logged.log[2:] == ["recorded", "succeeding"]
    assert [p.prediction_id for p in done.predictions] == ["p1"]
    assert provider.handed == ["p1"]
    assert logged.told == ["p1"]  # recorded new meanwhile: the success need not read it back
    assert await store.get(job.id) == done


async def test_a_cancel_while_the_record_is_written_waits_for_it(store):
    logged = Log(store)
    logged.hold.clear()
    ingestor = SlowIngestor(logged.log)
    ingestor.stored.set()
    runner = runner_for(logged, FinalProvider(), ingestor=ingestor)
    job = await runner.submit(ONE)
    async with asyncio.timeout(5):
        while len(logged.log) < 2:  # stored; the job waits for its record
            await asyncio.sleep(0.001)

    canceling = asyncio.ensure_future(runner.cancel(job.id))
    await asyncio.sleep(0.05)
    assert "canceling" not in logged.log  # the record still being written comes first
    logged.hold.set()
    ended = await canceling

    assert ended.status is JobStatus.CANCELED
    assert logged.log[-2:] == ["recorded", "canceling"]
    assert [p.prediction_id for p in ended.predictions] == ["p1"]


async def test_a_record_refused_for_capacity_is_written_again(store):
    busy = BusyStore(store, add_prediction=2)
    runner = runner_for(busy, FinalProvider(), store_retry_delays=(0, 0, 0))
    job = await runner.submit(ONE)

    done = await runner.wait(job.id)

    assert done.status is JobStatus.SUCCEEDED
    assert busy.calls["add_prediction"] == 3
    assert [p.prediction_id for p in done.predictions] == ["p1"]


async def test_a_record_the_database_never_takes_fails_the_job_instead_of_succeeding(store):
    busy = BusyStore(store, add_prediction=10)
    runner = runner_for(busy, FinalProvider(), store_retry_delays=(0,))
    job = await runner.submit(ONE)

    with pytest.raises(StoreBusy):
        await runner.wait(job.id)

    row = await store.get(job.id)
    assert row.status is JobStatus.FAILED
    assert row.images == ()


# --- provider URLs passed through: nothing to store, so the success records the prediction ---


async def test_without_outputs_to_store_the_success_records_the_prediction_in_its_write(store):
    logged = Log(store)
    runner = runner_for(logged, FinalProvider(), ingestor=None)
    job = await runner.submit(ONE)

    done = await runner.wait(job.id)

    assert done.status is JobStatus.SUCCEEDED
    assert logged.log == ["succeeding ['p1']"]  # no write of its own
    assert [p.prediction_id for p in done.predictions] == ["p1"]
    assert await store.get(job.id) == done


async def test_without_outputs_a_failure_after_the_handover_still_records_the_prediction(store):
    logged = Log(store)
    error = PredictionFailed("the model failed", provider="final")
    runner = runner_for(logged, FinalProvider(error=error), ingestor=None)
    job = await runner.submit(ONE)

    with pytest.raises(PredictionFailed):
        await runner.wait(job.id)

    row = await store.get(job.id)
    assert row.status is JobStatus.FAILED
    assert [p.prediction_id for p in row.predictions] == ["p1"]
    assert logged.log == ["recording", "recorded"]


class CanceledFirst(Log):
    """A user's cancel lands just before the job's success is written."""

    async def mark_succeeded(self, generation_id, **kwargs):
        await self._store.mark_canceled(generation_id, reason="user")
        return await super().mark_succeeded(generation_id, **kwargs)


async def test_without_outputs_a_success_that_loses_to_a_cancel_still_records_the_prediction(
    store,
):
    raced = CanceledFirst(store)
    runner = runner_for(raced, FinalProvider(), ingestor=None)
    job = await runner.submit(ONE)

    with pytest.raises(Canceled):
        await runner.wait(job.id)

    row = await store.get(job.id)
    assert row.status is JobStatus.CANCELED
    assert [p.prediction_id for p in row.predictions] == ["p1"]
    assert raced.log == ["succeeding ['p1']", "recording", "recorded"]
