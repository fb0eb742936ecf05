"""Creates in flight: recorded before they are sent, cleared by the prediction that answers them,
kept when no reply came (what recovery searches upstream for), and orphans adopted once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from imagegen.db import GenerationStore, open_store
from imagegen.errors import IdempotencyKeyInUse, InvalidTransition, NotFound
from imagegen.models import GenerationRequest, JobStatus, PendingCreate, PredictionRecord

from . import BACKENDS, FakeClock, database_url

REQUEST = GenerationRequest(model="o/m", prompt="cat", num_images=2, width=512, height=512)
INPUTS = {"prompt": "cat", "num_outputs": 1, "aspect_ratio": "1:1"}


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GenerationStore]:
    async with database_url(request.param, tmp_path) as url:
        opened = await open_store(url, clock=FakeClock())
        yield opened
        await opened.aclose()


async def running(store: GenerationStore, **lease: object) -> str:
    job = await store.create(REQUEST, provider="replicate", **lease)  # type: ignore[arg-type]
    await store.mark_running(job.id)
    return job.id


async def test_a_create_is_pending_until_its_prediction_is_recorded(store) -> None:
    job = await running(store)
    await store.begin_create(job, PendingCreate("o/m", INPUTS, 1))
    await store.begin_create(job, PendingCreate("o/m", INPUTS, 1))  # a fan-out, same inputs
    pending = await store.pending_creates(job)
    assert [(p.model, dict(p.inputs), p.images_requested) for p in pending] == [
        ("o/m", INPUTS, 1)
    ] * 2
    assert all(p.sent_at is not None and p.sent_at.tzinfo is not None for p in pending)

    # Key order does not matter: the inputs are compared as canonical JSON.
    reordered = dict(reversed(list(INPUTS.items())))
    await store.add_prediction(job, PredictionRecord("p-1", reordered, 1))
    assert len(await store.pending_creates(job)) == 1
    await store.add_prediction(job, PredictionRecord("p-2", {"prompt": "other"}, 1))
    assert len(await store.pending_creates(job)) == 1  # not the one it answers
    await store.add_prediction(job, PredictionRecord("p-3", INPUTS, 1))
    assert await store.pending_creates(job) == []


async def test_an_orphan_is_adopted_by_one_job_only(store) -> None:
    first, second = await running(store), await running(store)
    for job in (first, second):
        await store.begin_create(job, PendingCreate("o/m", INPUTS, 1))
    orphan = PredictionRecord("orphan", INPUTS, 1)
    assert await store.adopt_prediction(first, orphan) is True
    assert await store.adopt_prediction(second, orphan) is False
    assert [p.prediction_id for p in (await store.get(first)).predictions] == ["orphan"]
    assert (await store.get(second)).predictions == ()
    assert await store.pending_creates(first) == []
    assert len(await store.pending_creates(second)) == 1


async def test_released_leases_are_free_for_anyone_at_once(store) -> None:
    until = datetime(2031, 1, 1, tzinfo=UTC)  # long after the store's FakeClock
    job = await running(store, lease_owner="a", lease_expires_at=until)
    other = await running(store, lease_owner="b", lease_expires_at=until)
    assert await store.claim(job, owner="c", until=until) is False
    assert await store.release_leases("a", [job, other]) == 1  # only its own
    assert await store.claim(job, owner="c", until=until, include_own=False) is True
    assert await store.claim(other, owner="c", until=until) is False
    assert (await store.get(job)).status is JobStatus.RUNNING


async def test_a_sole_claim_is_refused_while_another_job_has_the_same_create_in_flight(
    store,
) -> None:
    mine, theirs = await running(store), await running(store)
    await store.begin_create(mine, PendingCreate("o/m", INPUTS, 1))
    await store.begin_create(theirs, PendingCreate("o/m", INPUTS, 1))
    found = PredictionRecord("found", INPUTS, 1)
    assert await store.adopt_prediction(mine, found, sole=True) is False  # may be theirs
    await store.add_prediction(theirs, PredictionRecord("theirs", INPUTS, 1))
    assert await store.adopt_prediction(mine, found, sole=True) is True
    assert [p.prediction_id for p in (await store.get(mine)).predictions] == ["found"]


async def test_a_finished_jobs_leftover_create_does_not_block_a_sole_claim(store) -> None:
    mine, old = await running(store), await running(store)
    await store.begin_create(old, PendingCreate("o/m", INPUTS, 1))  # its reply never came
    await store.mark_failed(old, error="boom", error_code="upstream_unavailable")
    await store.begin_create(mine, PendingCreate("o/m", INPUTS, 1))
    assert await store.adopt_prediction(mine, PredictionRecord("p", INPUTS, 1), sole=True)


async def test_a_success_records_its_predictions_in_the_same_write(store) -> None:
    job = await running(store)
    await store.begin_create(job, PendingCreate("o/m", INPUTS, 1))

    done = await store.mark_succeeded(
        job,
        images=[],
        provider_urls=["https://x/p-1.png"],
        images_missing=0,
        predictions=[PredictionRecord("p-1", INPUTS, 1)],
    )

    assert done.status is JobStatus.SUCCEEDED
    assert [p.prediction_id for p in done.predictions] == ["p-1"]
    assert await store.get(job) == done
    assert await store.pending_creates(job) == []  # the create it answers is cleared


class Statements:
    """The first word of each statement run while listening (BEGIN left out)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __enter__(self) -> list[str]:
        sa.event.listen(sa.Engine, "before_cursor_execute", self._seen)
        return self.seen

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(sa.Engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not statement.startswith("BEGIN"):
            self.seen.append(statement.split(None, 1)[0])


async def test_a_success_whose_predictions_are_all_new_does_not_read_them_back(store) -> None:
    job = await store.create(REQUEST, provider="replicate", started=True)
    assert job.status is JobStatus.RUNNING
    assert job.started_at is not None
    assert await store.get(job.id) == job
    await store.begin_create(job.id, PendingCreate("o/m", INPUTS, 1))
    await store.begin_create(job.id, PendingCreate("o/m", INPUTS, 1))
    first, second = PredictionRecord("p-1", INPUTS, 1), PredictionRecord("p-2", INPUTS, 1)

    with Statements() as seen:
        done = await store.mark_succeeded(
            job.id,
            images=[],
            provider_urls=["https://x/p-1.png", "https://x/p-2.png"],
            images_missing=0,
            predictions=[first, second],
            request=job.request,
        )

    assert "SELECT" not in seen  # neither the predictions nor the request read back
    assert done.predictions == (first, second)
    assert done.request == REQUEST
    assert await store.get(job.id) == done
    assert await store.pending_creates(job.id) == []


async def test_a_success_reads_back_predictions_it_did_not_record_itself(store) -> None:
    job = await running(store)
    earlier = PredictionRecord("p-0", {"prompt": "earlier"}, 1)
    await store.add_prediction(job, earlier)
    again = PredictionRecord("p-0", {"prompt": "not what was recorded"}, 1)
    kept = PredictionRecord("p-1", INPUTS, 1)

    done = await store.mark_succeeded(
        job, images=[], provider_urls=[], images_missing=0, predictions=[kept]
    )
    assert done.predictions == (earlier, kept)  # the earlier one too, in recorded order
    assert await store.get(job) == done

    other = await running(store)
    await store.add_prediction(other, earlier)
    done = await store.mark_succeeded(
        other, images=[], provider_urls=[], images_missing=0, predictions=[again]
    )
    assert done.predictions == (earlier,)  # as recorded first, not as the success had it
    assert await store.get(other) == done


async def test_a_success_that_loses_its_race_records_none_of_its_predictions(store) -> None:
    job = await running(store)
    await store.begin_create(job, PendingCreate("o/m", INPUTS, 1))
    await store.mark_canceled(job, reason="user")

    with pytest.raises(InvalidTransition):
        await store.mark_succeeded(
            job,
            images=[],
            provider_urls=[],
            images_missing=0,
            predictions=[PredictionRecord("p-1", INPUTS, 1)],
        )

    assert (await store.get(job)).predictions == ()
    assert len(await store.pending_creates(job)) == 1


async def test_a_success_with_predictions_of_an_unknown_job_is_not_found(store) -> None:
    with pytest.raises(NotFound):
        await store.mark_succeeded(
            "gen_missing",
            images=[],
            provider_urls=[],
            images_missing=0,
            predictions=[PredictionRecord("p-1", INPUTS, 1)],
        )


async def test_a_job_written_with_its_creates_records_them_pending_in_the_same_write(
    store,
) -> None:
    creates = [PendingCreate("o/m", INPUTS, 1), PendingCreate("o/m", {**INPUTS, "seed": 1}, 1)]
    with Statements() as seen:
        job = await store.create(REQUEST, provider="replicate", started=True, creates=creates)

    assert seen == ["INSERT", "INSERT"]  # the job, then its creates (one executemany)
    pending = await store.pending_creates(job.id)
    assert [(p.model, p.inputs, p.images_requested) for p in pending] == [
        (c.model, c.inputs, c.images_requested) for c in creates
    ]
    assert {p.sent_at for p in pending} == {job.created_at}  # sent, at the latest, from then
    await store.add_prediction(job.id, PredictionRecord("p-1", INPUTS, 1))
    assert [p.inputs for p in await store.pending_creates(job.id)] == [creates[1].inputs]


async def test_a_job_refused_for_its_idempotency_key_writes_none_of_its_creates(store) -> None:
    first = await store.create(REQUEST, provider="replicate", idempotency_key="k")
    with pytest.raises(IdempotencyKeyInUse):
        await store.create(
            REQUEST,
            provider="replicate",
            idempotency_key="k",
            started=True,
            creates=[PendingCreate("o/m", INPUTS, 1)],
        )
    assert await store.pending_creates(first.id) == []
    count = sa.text("SELECT count(*) FROM pending_creates")
    assert await store._db.read(lambda connection: connection.execute(count).scalar()) == 0


async def test_recording_a_prediction_says_whether_it_was_new(store) -> None:
    job = await running(store)
    record = PredictionRecord("p-1", INPUTS, 1)
    assert await store.add_prediction(job, record) is True
    assert await store.add_prediction(job, record) is False  # recorded already: a no-op


async def test_a_success_told_what_was_recorded_earlier_does_not_read_it_back(store) -> None:
    job = await running(store)
    first = PredictionRecord("p-1", INPUTS, 1)
    assert await store.add_prediction(job, first)
    with Statements() as seen:
        done = await store.mark_succeeded(
            job,
            images=[],
            provider_urls=["https://x/p-1.png"],
            images_missing=0,
            recorded=[first],
            request=REQUEST,
        )
    assert "SELECT" not in seen
    assert done.predictions == (first,)
    assert await store.get(job) == done


async def test_a_success_told_of_some_predictions_only_reads_them_all_back(store) -> None:
    job = await running(store)
    first, second = PredictionRecord("p-1", INPUTS, 1), PredictionRecord("p-2", INPUTS, 1)
    await store.add_prediction(job, first)
    await store.add_prediction(job, second)  # by another path: the caller does not say
    with Statements() as seen:
        done = await store.mark_succeeded(
            job, images=[], provider_urls=[], images_missing=0, recorded=[second]
        )
    assert "SELECT" in seen
    assert done.predictions == (first, second)
    assert await store.get(job) == done
