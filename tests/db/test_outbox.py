"""The webhook outbox on SQLite and PostgreSQL: the same tests, run against both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from imagegen.db import GenerationStore, open_store
from imagegen.jobs.records import NewDelivery, WebhookEvent
from imagegen.models import Generation, GenerationRequest

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


def outbox_for(event: WebhookEvent, count: int = 1):
    def build(generation: Generation) -> list[NewDelivery]:
        return [
            NewDelivery(
                f"msg_{generation.id}_{event}_{i}", generation.id, event, "https://h/", "{}"
            )
            for i in range(count)
        ]

    return build


async def test_messages_are_written_with_the_transition_claimed_and_recorded(
    store: GenerationStore, clock: FakeClock
) -> None:
    job = await store.create(REQUEST, provider="p")
    await store.mark_running(job.id, outbox=outbox_for(WebhookEvent.START, 2))
    assert await store.outbox.next_due() == clock.now

    claimed = await store.outbox.claim_due(limit=10, lease_seconds=30)
    assert [(d.event, d.attempts) for d in claimed] == [(WebhookEvent.START, 0)] * 2
    assert await store.outbox.claim_due(limit=10, lease_seconds=30) == []  # leased
    assert await store.outbox.next_due() == clock.now + timedelta(seconds=30)

    first, second = claimed
    await store.outbox.record(first.id, status_code=200, error=None, delivered=True, retry_at=None)
    retry = clock.now + timedelta(seconds=5)
    await store.outbox.record(
        second.id, status_code=None, error="ConnectError", delivered=False, retry_at=retry
    )
    clock.advance(5)
    again = await store.outbox.claim_due(limit=10, lease_seconds=30)
    assert [(d.id, d.attempts) for d in again] == [(second.id, 1)]
    await store.outbox.record(
        second.id, status_code=500, error="HTTP 500", delivered=False, retry_at=None
    )

    assert await store.outbox.next_due() is None
    statuses = {d.id: status for d, status in await store.outbox.deliveries(job.id)}
    assert statuses == {first.id: "delivered", second.id: "failed"}
    attempts = (await store.outbox.attempts([job.id, "gen_other"]))[job.id]
    assert [(a.delivery_id, a.status_code, a.delivered) for a in attempts] == [
        (first.id, 200, True),
        (second.id, None, False),
        (second.id, 500, False),
    ]


async def test_a_crashed_workers_claim_runs_out_and_the_message_is_due_again(
    store: GenerationStore, clock: FakeClock
) -> None:
    job = await store.create(REQUEST, provider="p")
    await store.mark_running(job.id)
    await store.mark_failed(
        job.id, error="x", error_code="x", outbox=outbox_for(WebhookEvent.COMPLETED)
    )
    assert len(await store.outbox.claim_due(limit=1, lease_seconds=30)) == 1
    clock.advance(31)
    assert len(await store.outbox.claim_due(limit=1, lease_seconds=30)) == 1


async def test_deleting_a_job_deletes_its_messages(store: GenerationStore) -> None:
    import sqlalchemy as sa

    from imagegen.db.tables import GenerationRow, WebhookDeliveryRow

    job = await store.create(REQUEST, provider="p")
    await store.mark_running(job.id, outbox=outbox_for(WebhookEvent.START))
    async with store.engine.begin() as connection:
        await connection.execute(sa.delete(GenerationRow).where(GenerationRow.id == job.id))
        left = await connection.scalar(sa.select(sa.func.count()).select_from(WebhookDeliveryRow))
    assert left == 0
    assert (await store.outbox.attempts([job.id])) == {}
