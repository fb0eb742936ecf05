"""A job that finds a slot and its create tokens free is written with the creates its provider
sends first (``Provider.first_creates``), pending, in the job's own write: none of them is
written again before it is sent, and none waits for a token. A job that waits for a slot or a
token, and any create the provider did not announce, is written pending on its own when it is
about to be sent, as before."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tests.jobs.conftest import runner_for
from tests.jobs.fakes import CreatesOnly

from imagegen.jobs.limits import Limits, ProviderLimits
from imagegen.models import (
    GenerationRequest,
    JobStatus,
    PendingCreate,
    PredictionRecord,
    ProviderImage,
    ProviderResult,
)
from imagegen.providers.base import GenerationContext

REQUEST = GenerationRequest(model="owner/model", prompt="cat", num_images=1, width=512, height=512)


def create_for(request: GenerationRequest, seed: int = 1) -> PendingCreate:
    return PendingCreate("owner/model", {"prompt": request.prompt, "seed": seed}, 1)


@dataclass
class Announcing(CreatesOnly):
    """Announces one create per request; ``extra`` creates it sends besides, unannounced. Each
    create is announced (``on_create``) before it is "sent", and recorded once made."""

    name: str = "announcing"
    extra: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    sent: list[PendingCreate] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.release.set()

    def first_creates(self, request: GenerationRequest) -> tuple[PendingCreate, ...]:
        return (create_for(request),)

    async def generate(
        self, request: GenerationRequest, context: GenerationContext
    ) -> ProviderResult:
        await self.release.wait()
        creates = [create_for(request, seed) for seed in range(1, 2 + self.extra)]
        for index, create in enumerate(creates):
            await context.acquire_create()
            await context.on_create(create)
            self.sent.append(create)
            await context.on_prediction(PredictionRecord(f"p{index}", create.inputs, 1))
        image = ProviderImage("https://replicate.delivery/x/p0.png", "p0")
        return ProviderResult(images=(image,), requested=1)


class Writes:
    """The real store, noting the creates each job is written with and each pending create
    written on its own."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.created_with: list[tuple[PendingCreate, ...]] = []
        self.begun: list[PendingCreate] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        self.created_with.append(tuple(kwargs.get("creates", ())))
        return await self._store.create(*args, **kwargs)

    async def begin_create(self, generation_id: str, pending: PendingCreate, **kwargs: Any) -> None:
        self.begun.append(pending)
        await self._store.begin_create(generation_id, pending, **kwargs)


async def test_a_job_with_a_free_slot_is_written_with_its_first_create(store) -> None:
    writes, provider = Writes(store), Announcing()
    runner = runner_for(writes, provider, ingestor=None)
    job = await runner.submit(REQUEST)
    assert job.status is JobStatus.RUNNING
    done = await runner.wait(job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert writes.created_with == [(create_for(REQUEST),)]
    assert writes.begun == []  # not written again before it was sent
    assert provider.sent == [create_for(REQUEST)]
    assert await store.pending_creates(job.id) == []  # cleared by the prediction it answers
    await runner.aclose()


async def test_a_create_the_provider_did_not_announce_is_written_before_it_is_sent(store) -> None:
    writes, provider = Writes(store), Announcing(extra=1)
    runner = runner_for(writes, provider, ingestor=None)
    job = await runner.submit(REQUEST)
    done = await runner.wait(job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert writes.created_with == [(create_for(REQUEST),)]
    assert writes.begun == [create_for(REQUEST, seed=2)]
    assert [p.prediction_id for p in done.predictions] == ["p0", "p1"]
    assert await store.pending_creates(job.id) == []
    await runner.aclose()


async def test_a_job_that_waits_for_a_slot_writes_its_create_when_it_runs(store) -> None:
    writes, provider = Writes(store), Announcing()
    provider.release.clear()
    limits = ProviderLimits({"announcing": Limits(max_concurrency=1)})
    runner = runner_for(writes, provider, ingestor=None, limits=limits)
    first = await runner.submit(REQUEST)
    second = await runner.submit(REQUEST)
    assert (first.status, second.status) == (JobStatus.RUNNING, JobStatus.QUEUED)
    assert writes.created_with == [(create_for(REQUEST),), ()]
    # Queued, it has no create pending: a crash now leaves nothing to look for upstream.
    assert await store.pending_creates(second.id) == []
    provider.release.set()
    assert (await runner.wait(first.id)).status is JobStatus.SUCCEEDED
    assert (await runner.wait(second.id)).status is JobStatus.SUCCEEDED
    assert writes.begun == [create_for(REQUEST)]  # the second job's, written as it started
    await runner.aclose()


async def test_a_job_cancelled_before_its_create_is_sent_leaves_it_pending(store) -> None:
    """Written with the job, a create that never went out stays pending: recovery, were the
    job unfinished, would look for it upstream, find nothing and send it once."""
    writes, provider = Writes(store), Announcing()
    provider.release.clear()
    runner = runner_for(writes, provider, ingestor=None)
    job = await runner.submit(REQUEST)
    assert [p.inputs for p in await store.pending_creates(job.id)] == [create_for(REQUEST).inputs]
    canceled = await runner.cancel(job.id)
    assert canceled.status is JobStatus.CANCELED
    assert provider.sent == []
    await runner.aclose()


async def test_a_job_whose_create_would_wait_for_its_token_writes_it_when_its_turn_comes(
    store,
) -> None:
    """Written with the job, a create waiting for the rate limit would sit pending: a process
    that stopped meanwhile would leave its adopter searching upstream for it."""
    writes, provider = Writes(store), Announcing()
    limits = ProviderLimits({"announcing": Limits(per_minute=1200, burst=1)})  # one per 50 ms
    runner = runner_for(writes, provider, ingestor=None, limits=limits)
    first = await runner.submit(REQUEST)
    second = await runner.submit(REQUEST)  # the bucket is empty: its create waits its turn
    assert writes.created_with == [(create_for(REQUEST),), ()]
    assert (await runner.wait(first.id)).status is JobStatus.SUCCEEDED
    assert (await runner.wait(second.id)).status is JobStatus.SUCCEEDED
    assert writes.begun == [create_for(REQUEST)]  # the second job's, once its token came
    assert provider.sent == [create_for(REQUEST)] * 2
    await runner.aclose()
