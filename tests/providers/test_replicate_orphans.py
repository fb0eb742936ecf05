"""Creates whose reply never came: announced before they are sent, found upstream by the list
endpoint and adopted after a restart instead of being paid for twice; and a provider cancelled
while imagegen shuts down leaves its predictions running for the next process.

Over real HTTP against the Replicate double (in a thread), which lists predictions as Replicate
does (newest first, 100 a page, ``created_after``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.fakes.replicate_double import DoubleConfig, ReplicateDouble
from tests.fakes.replicate_models import FLUX_SCHNELL_REF

from imagegen.errors import UpstreamUnavailable
from imagegen.models import GenerationRequest, PendingCreate, PredictionRecord
from imagegen.providers.base import GenerationContext
from imagegen.providers.replicate import ReplicateProvider

TOKEN = "r8_test"
INPUTS = {"prompt": "a lighthouse", "aspect_ratio": "1:1", "megapixels": "0.25", "num_outputs": 1}
REQUEST = GenerationRequest(FLUX_SCHNELL_REF, "a lighthouse", 1, 512, 512)


@pytest.fixture
def double() -> Iterator[ReplicateDouble]:
    with ReplicateDouble(DoubleConfig(duration=0.2, queue_time=0.05)) as running:
        running.configure(list_page_size=2)  # the search pages through the list
        yield running


@pytest.fixture
async def provider(double: ReplicateDouble) -> AsyncIterator[ReplicateProvider]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield ReplicateProvider(
            http, api_token=TOKEN, base_url=double.base_url, wait_seconds=0, poll_interval=0.05
        )


class Job:
    """What the job runner gives a provider, with a record of what it was told."""

    def __init__(self, double: ReplicateDouble, *, taken: set[str] | None = None) -> None:
        self.double = double
        self.taken = taken if taken is not None else set()
        self.announced: list[tuple[PendingCreate, int]] = []  # with upstream creates by then
        self.recorded: list[str] = []
        self.adopted: list[str] = []
        self.claimable = True  # False: another job has a create with the same inputs in flight
        self.claimed: list[str] = []
        self.closing = False

    @property
    def context(self) -> GenerationContext:
        return GenerationContext(
            deadline=asyncio.get_running_loop().time() + 20,
            on_prediction=self._recorded,
            on_create=self._announced,
            adopt=self._adopt,
            claim=self._claim,
            handing_back=lambda: self.closing,
        )

    async def _announced(self, pending: PendingCreate) -> None:
        self.announced.append((pending, self.double.stats()["creates"]["total"]))

    async def _recorded(self, record: PredictionRecord) -> None:
        self.recorded.append(record.prediction_id)

    async def _claim(self, record: PredictionRecord) -> bool:
        if not self.claimable or record.prediction_id in self.taken:
            return False
        self.claimed.append(record.prediction_id)
        return True

    async def _adopt(self, record: PredictionRecord) -> bool:
        if record.prediction_id in self.taken:
            return False  # another job records it
        self.taken.add(record.prediction_id)
        self.adopted.append(record.prediction_id)
        return True


def upstream_create(double: ReplicateDouble, inputs: dict[str, Any]) -> str:
    """A prediction created as imagegen would have, whose reply imagegen never saw."""
    response = httpx.post(
        f"{double.base_url}/v1/models/{FLUX_SCHNELL_REF}/predictions",
        json={"input": inputs},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 201
    return str(response.json()["id"])


def pending(seconds_ago: float = 5.0) -> PendingCreate:
    return PendingCreate(
        FLUX_SCHNELL_REF, INPUTS, 1, datetime.now(UTC) - timedelta(seconds=seconds_ago)
    )


async def test_each_create_is_announced_with_its_exact_inputs_before_it_is_sent(
    double, provider
) -> None:
    job = Job(double)
    result = await provider.generate(REQUEST, job.context)
    [(announced, creates_by_then)] = job.announced
    assert creates_by_then == 0
    assert (announced.model, dict(announced.inputs), announced.images_requested) == (
        FLUX_SCHNELL_REF,
        INPUTS,
        1,
    )
    [prediction] = double.stats()["predictions"]
    assert prediction["input"] == INPUTS  # what was announced is what was sent
    assert job.recorded == [prediction["id"]]
    assert len(result.images) == 1


async def test_a_pending_create_adopts_the_prediction_it_started_instead_of_paying_again(
    double, provider
) -> None:
    for n in range(3):  # unrelated predictions of the account, some with the same model
        upstream_create(double, {**INPUTS, "prompt": f"other {n}"})
    orphan = upstream_create(double, INPUTS)
    upstream_create(double, {**INPUTS, "prompt": "newer"})
    job = Job(double)
    result = await provider.resume(REQUEST, [], job.context, [pending()])
    assert job.adopted == [orphan]
    assert double.stats()["creates"]["total"] == 5  # nothing new
    assert [image.prediction_id for image in result.images] == [orphan]


async def test_a_pending_create_that_never_reached_replicate_is_created_once(
    double, provider
) -> None:
    upstream_create(double, {**INPUTS, "prompt": "someone else's"})
    job = Job(double)
    result = await provider.resume(REQUEST, [], job.context, [pending()])
    stats = double.stats()
    assert stats["creates"]["total"] == 2
    assert job.adopted == []
    assert job.announced == []  # it was pending already
    assert job.recorded == [result.images[0].prediction_id]


async def test_equal_creates_each_take_a_free_orphan_and_skip_ones_other_jobs_record(
    double, provider
) -> None:
    recorded_elsewhere = upstream_create(double, INPUTS)  # another job's, same inputs
    mine = upstream_create(double, INPUTS)
    job = Job(double, taken={recorded_elsewhere})
    request = GenerationRequest(FLUX_SCHNELL_REF, "a lighthouse", 2, 512, 512)
    result = await provider.resume(request, [], job.context, [pending(), pending()])
    assert job.adopted == [mine]
    assert double.stats()["creates"]["total"] == 3  # one adopted, one created
    assert len(job.recorded) == 1
    assert sorted(image.prediction_id for image in result.images) == sorted([mine, *job.recorded])


async def test_a_run_cancelled_while_imagegen_shuts_down_cancels_nothing_upstream(
    double, provider
) -> None:
    double.configure(duration=5.0)
    job = Job(double)
    job.closing = True
    task = asyncio.ensure_future(provider.generate(REQUEST, job.context))
    while not job.recorded:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    stats = double.stats()
    assert stats["cancels"] == 0
    assert [p["status"] for p in stats["predictions"]] in (["starting"], ["processing"])


async def test_the_search_waits_for_a_create_sent_moments_ago_to_land(double, provider) -> None:
    job = Job(double)
    sent = pending(seconds_ago=0)
    search = asyncio.ensure_future(provider.resume(REQUEST, [], job.context, [sent]))
    await asyncio.sleep(1.0)  # the create lands upstream after the restart began to look
    late = upstream_create(double, INPUTS)
    result = await search
    assert job.adopted == [late]
    assert double.stats()["creates"]["total"] == 1
    assert [image.prediction_id for image in result.images] == [late]


async def sync_provider(double: ReplicateDouble, http: httpx.AsyncClient) -> ReplicateProvider:
    return ReplicateProvider(
        http, api_token=TOKEN, base_url=double.base_url, wait_seconds=5, poll_interval=0.05
    )


async def cancel_mid_create(double: ReplicateDouble, job: Job) -> float:
    """Start a generation in sync mode, cancel it while its create is held open upstream; the
    moment of the cancel (``time.time``)."""
    async with httpx.AsyncClient(timeout=30) as http:
        provider = await sync_provider(double, http)
        task = asyncio.ensure_future(provider.generate(REQUEST, job.context))
        while double.stats()["creates"]["total"] == 0:
            await asyncio.sleep(0.01)
        asked = time.time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(1.5)
    return asked


async def test_a_cancel_mid_create_finds_the_prediction_in_the_list_and_stops_it_at_once(
    double,
) -> None:
    double.configure(duration=3.0)  # held open by sync mode (wait=5) until it is done
    job = Job(double)
    asked = await cancel_mid_create(double, job)
    [prediction] = double.stats()["predictions"]
    assert prediction["status"] == "canceled"
    assert prediction["completed"] - asked <= 1.0
    assert job.claimed == [prediction["id"]]


async def test_a_cancel_mid_create_never_stops_a_prediction_that_may_be_another_jobs(
    double,
) -> None:
    double.configure(duration=1.0)
    job = Job(double)
    job.claimable = False  # another job's create with these inputs is in flight
    await cancel_mid_create(double, job)
    [prediction] = double.stats()["predictions"]
    assert prediction["status"] == "succeeded"  # left alone; its own create answered first
    assert job.claimed == []


async def test_a_create_whose_reply_is_lost_adopts_the_prediction_it_started(
    double, provider
) -> None:
    double.script("lose_reply", route="create")  # made upstream, then the connection reset
    job = Job(double)
    result = await provider.generate(REQUEST, job.context)
    [prediction] = double.stats()["predictions"]
    assert job.claimed == [prediction["id"]]
    assert [image.prediction_id for image in result.images] == [prediction["id"]]
    assert double.stats()["creates"]["total"] == 1


async def test_a_lost_reply_that_may_be_another_jobs_prediction_stays_an_error(
    double, provider
) -> None:
    double.script("lose_reply", route="create")
    job = Job(double)
    job.claimable = False
    with pytest.raises(UpstreamUnavailable, match="connection failed while creating"):
        await provider.generate(REQUEST, job.context)
    assert double.stats()["creates"]["total"] == 1
