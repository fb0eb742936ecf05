"""GenerationStore on SQLite and PostgreSQL: the same tests, run against both."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError
from sqlalchemy.ext.asyncio import create_async_engine

from imagegen.db import (
    MAX_LIST_LIMIT,
    GenerationStore,
    InvalidTransition,
    new_generation_id,
    open_store,
)
from imagegen.db.rows import request_from_json
from imagegen.db.tables import PredictionRow
from imagegen.errors import IdempotencyKeyInUse, InvalidRequest, NotFound
from imagegen.models import (
    Generation,
    GenerationRequest,
    JobStatus,
    PendingCreate,
    PredictionRecord,
    StoredImage,
)

from . import BACKENDS, FakeClock, SequentialIds, database_url

REQUEST = GenerationRequest(
    model="black-forest-labs/flux-schnell",
    prompt="a lighthouse at dusk",
    num_images=2,
    width=512,
    height=768,
    seed=7,
    negative_prompt="fog",
    output_format="png",
)
IMAGES = [
    StoredImage("ab/cd.png", "image/png", 512, 768, 1234, "https://replicate.delivery/a.png"),
    StoredImage("ef/01.webp", "image/webp", 512, 768, 99),
]
URLS = ["https://replicate.delivery/a.png", "https://replicate.delivery/b.png"]


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


async def _running(store: GenerationStore) -> Generation:
    generation = await store.create(REQUEST, provider="replicate")
    return await store.mark_running(generation.id)


async def _finish(store: GenerationStore, generation_id: str, outcome: JobStatus) -> Generation:
    if outcome is JobStatus.SUCCEEDED:
        return await store.mark_succeeded(
            generation_id, images=IMAGES, provider_urls=URLS, images_missing=0
        )
    if outcome is JobStatus.FAILED:
        return await store.mark_failed(generation_id, error="boom", error_code="prediction_failed")
    return await store.mark_canceled(generation_id, reason="user asked")


# --- create and get ---


async def test_create_persists_a_queued_job(store: GenerationStore, clock: FakeClock) -> None:
    deadline = clock.now + timedelta(minutes=5)
    created = await store.create(
        REQUEST,
        provider="replicate",
        deadline_at=deadline,
        metadata={"user": "u1", "tags": ["a", "b"], "nested": {"n": 1.5, "none": None}},
        idempotency_key="key-1",
        request_hash="sha256:abc",
        webhook_url="https://example.test/hook",
        webhook_events=["completed"],
    )

    assert created == Generation(
        id="gen_00000000000000000000000001",
        status=JobStatus.QUEUED,
        request=REQUEST,
        provider="replicate",
        created_at=clock.now,
        metadata={"user": "u1", "tags": ["a", "b"], "nested": {"n": 1.5, "none": None}},
        deadline_at=deadline,
        idempotency_key="key-1",
        request_hash="sha256:abc",
        webhook_url="https://example.test/hook",
        webhook_events=("completed",),
        updated_at=clock.now,
    )
    assert await store.get(created.id) == created


async def test_create_defaults(store: GenerationStore) -> None:
    request = GenerationRequest(model="m", prompt="p", num_images=1, width=64, height=64)
    created = await store.create(request, provider="openai")

    loaded = await store.get(created.id)
    assert loaded == created
    assert loaded.request == request
    assert loaded.metadata == {}
    assert loaded.webhook_events == ()
    assert (loaded.deadline_at, loaded.idempotency_key, loaded.webhook_url) == (None, None, None)


async def test_times_are_aware_utc_whatever_the_clock_zone(
    store: GenerationStore, clock: FakeClock
) -> None:
    clock.now = datetime(2030, 6, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    created = await store.create(REQUEST, provider="replicate", deadline_at=clock.now)

    loaded = await store.get(created.id)
    assert loaded.created_at == clock.now
    assert loaded.created_at.tzinfo is UTC
    assert loaded.deadline_at is not None
    assert loaded.deadline_at.tzinfo is UTC
    assert loaded.created_at.hour == 10


async def test_create_rejects_a_naive_deadline(store: GenerationStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.create(REQUEST, provider="replicate", deadline_at=datetime(2030, 1, 1))


async def test_get_unknown_raises_not_found(store: GenerationStore) -> None:
    with pytest.raises(NotFound) as caught:
        await store.get("gen_missing")
    assert str(caught.value) == "generation 'gen_missing' not found"


# --- transitions ---


async def test_happy_path(store: GenerationStore, clock: FakeClock) -> None:
    created = await store.create(REQUEST, provider="replicate")
    clock.advance(1)
    running = await store.mark_running(created.id)
    assert running.status is JobStatus.RUNNING
    assert running.started_at == running.updated_at == clock.now

    first = PredictionRecord("pred-1", {"prompt": "a lighthouse", "num_outputs": 2}, 2)
    second = PredictionRecord("pred-2", {"prompt": "a lighthouse", "num_outputs": 1}, 1)
    await store.add_prediction(created.id, first)
    await store.add_prediction(created.id, second)
    assert (await store.get(created.id)).predictions == (first, second)

    clock.advance(2)
    done = await store.mark_succeeded(
        created.id, images=IMAGES, provider_urls=URLS, images_missing=1
    )
    assert done.status is JobStatus.SUCCEEDED
    assert done.completed_at == clock.now
    assert done.images == tuple(IMAGES)
    assert done.provider_urls == tuple(URLS)
    assert done.images_missing == 1
    assert done.predictions == (first, second)
    assert (done.error, done.error_code) == (None, None)
    assert await store.get(created.id) == done


async def test_revised_prompts_round_trip_per_image(store: GenerationStore) -> None:
    # Two outputs with identical bytes share a key; each keeps its own revised prompt.
    shared = StoredImage("ab/cd.png", "image/png", 1024, 1024, 1234)
    images = [
        replace(shared, revised_prompt="A vivid lighthouse at dusk, oil on canvas"),
        replace(shared, revised_prompt="A photo of a lighthouse at dusk ✓"),
        replace(shared),
    ]
    running = await _running(store)
    done = await store.mark_succeeded(running.id, images=images, provider_urls=[], images_missing=0)

    assert done.images == tuple(images)
    assert (await store.get(running.id)).images == tuple(images)
    page, _ = await store.list(limit=1)
    assert page[0].images == tuple(images)


async def test_mark_failed_from_queued_and_running(store: GenerationStore) -> None:
    queued = await store.create(REQUEST, provider="replicate")
    running = await _running(store)

    for generation in (queued, running):
        failed = await store.mark_failed(
            generation.id, error="the model failed", error_code="prediction_failed"
        )
        assert failed.status is JobStatus.FAILED
        assert failed.error == "the model failed"
        assert failed.error_code == "prediction_failed"
        assert failed.completed_at is not None


async def test_mark_canceled_records_the_reason(store: GenerationStore) -> None:
    queued = await store.create(REQUEST, provider="replicate")
    running = await _running(store)

    for generation in (queued, running):
        canceled = await store.mark_canceled(generation.id, reason="client disconnected")
        assert canceled.status is JobStatus.CANCELED
        assert (canceled.error, canceled.error_code) == ("client disconnected", "canceled")


async def test_mark_running_only_from_queued(store: GenerationStore) -> None:
    running = await _running(store)

    with pytest.raises(InvalidTransition) as caught:
        await store.mark_running(running.id)
    assert caught.value.current == running
    assert caught.value.target is JobStatus.RUNNING
    assert caught.value.code == "invalid_transition"


async def test_mark_succeeded_needs_running_and_writes_nothing_otherwise(
    store: GenerationStore,
) -> None:
    queued = await store.create(REQUEST, provider="replicate")

    with pytest.raises(InvalidTransition) as caught:
        await store.mark_succeeded(queued.id, images=IMAGES, provider_urls=URLS, images_missing=0)
    assert caught.value.current == queued
    assert await store.get(queued.id) == queued


@pytest.mark.parametrize(
    "outcome", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED], ids=str
)
async def test_a_terminal_job_never_changes(
    store: GenerationStore, clock: FakeClock, outcome: JobStatus
) -> None:
    generation = await _running(store)
    final = await _finish(store, generation.id, outcome)
    clock.advance(60)

    attempts = [
        store.mark_running(generation.id),
        store.mark_succeeded(generation.id, images=[], provider_urls=[], images_missing=2),
        store.mark_failed(generation.id, error="late", error_code="late"),
        store.mark_canceled(generation.id, reason="late"),
    ]
    for attempt in attempts:
        with pytest.raises(InvalidTransition) as caught:
            await attempt
        assert caught.value.current == final
    assert await store.get(generation.id) == final


async def test_transitions_of_an_unknown_job_raise_not_found(store: GenerationStore) -> None:
    attempts = [
        store.mark_running("gen_missing"),
        store.mark_succeeded("gen_missing", images=[], provider_urls=[], images_missing=0),
        store.mark_failed("gen_missing", error="x", error_code="x"),
        store.mark_canceled("gen_missing", reason="x"),
        store.add_prediction("gen_missing", PredictionRecord("p", {}, 1)),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound, match="gen_missing"):
            await attempt


async def test_mark_succeeded_rejects_negative_missing(store: GenerationStore) -> None:
    generation = await _running(store)
    with pytest.raises(ValueError, match="images_missing"):
        await store.mark_succeeded(generation.id, images=[], provider_urls=[], images_missing=-1)


async def test_two_replicas_racing_to_finish_one_wins(url: str, clock: FakeClock) -> None:
    # Two stores with their own engines stand in for two API replicas on one database.
    first = await open_store(url, clock=clock, new_id=SequentialIds())
    second = await open_store(url, clock=clock)
    try:
        generation = await _running(first)
        outcomes = await asyncio.gather(
            first.mark_succeeded(
                generation.id, images=IMAGES, provider_urls=URLS, images_missing=0
            ),
            second.mark_canceled(generation.id, reason="user asked"),
            second.mark_failed(generation.id, error="deadline", error_code="deadline_exceeded"),
            return_exceptions=True,
        )
        winners = [o for o in outcomes if isinstance(o, Generation)]
        losers = [o for o in outcomes if isinstance(o, InvalidTransition)]
        assert (len(winners), len(losers)) == (1, 2)
        assert all(loser.current == winners[0] for loser in losers)
        stored = await second.get(generation.id)
        assert stored == winners[0]
        assert len(stored.images) == (2 if stored.status is JobStatus.SUCCEEDED else 0)
    finally:
        await first.aclose()
        await second.aclose()


async def test_only_one_replica_claims_a_queued_job(url: str) -> None:
    stores = [await open_store(url) for _ in range(3)]
    try:
        generation = await stores[0].create(REQUEST, provider="replicate")
        outcomes = await asyncio.gather(
            *(store.mark_running(generation.id) for store in stores), return_exceptions=True
        )
        assert sum(isinstance(o, Generation) for o in outcomes) == 1
        assert sum(isinstance(o, InvalidTransition) for o in outcomes) == 2
    finally:
        for store in stores:
            await store.aclose()


async def test_a_generation_costs_eight_statements(store: GenerationStore) -> None:
    # The hot path: create, start, record the create in flight, record the prediction (and
    # clear the pending create), succeed. Each transition is one UPDATE ... RETURNING (the job
    # is not read back); recording a prediction is one INSERT and one DELETE.
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not statement.startswith("BEGIN"):
            statements.append(statement.split(None, 1)[0])

    sa.event.listen(sa.Engine, "before_cursor_execute", seen)
    try:
        generation = await _running(store)
        await store.begin_create(generation.id, PendingCreate("o/m", {"prompt": "x"}, 2))
        await store.add_prediction(generation.id, PredictionRecord("p", {"prompt": "x"}, 2))
        done = await _finish(store, generation.id, JobStatus.SUCCEEDED)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", seen)

    assert statements == [
        *("INSERT", "UPDATE", "INSERT", "INSERT", "DELETE"),
        *("UPDATE", "INSERT", "SELECT"),
    ]
    assert await store.pending_creates(generation.id) == []
    assert done == await store.get(generation.id)
    assert done.predictions == (PredictionRecord("p", {"prompt": "x"}, 2),)


# --- predictions ---


async def test_add_prediction_twice_is_a_no_op(store: GenerationStore) -> None:
    generation = await _running(store)
    record = PredictionRecord("pred-1", {"prompt": "x"}, 2)
    await store.add_prediction(generation.id, record)
    await store.add_prediction(generation.id, PredictionRecord("pred-1", {"other": 1}, 9))

    assert (await store.get(generation.id)).predictions == (record,)


async def test_add_prediction_after_cancel_is_kept(store: GenerationStore) -> None:
    # A prediction started just before a cancel must stay findable, to cancel it upstream.
    generation = await _running(store)
    await store.mark_canceled(generation.id, reason="user asked")
    record = PredictionRecord("pred-late", {"prompt": "x"}, 1)
    await store.add_prediction(generation.id, record)

    assert (await store.get(generation.id)).predictions == (record,)


async def test_set_prediction_status(store: GenerationStore, clock: FakeClock) -> None:
    generation = await _running(store)
    await store.add_prediction(generation.id, PredictionRecord("pred-1", {}, 1))
    clock.advance(3)
    await store.set_prediction_status(generation.id, "pred-1", "processing")

    async with store.engine.connect() as connection:
        row = (await connection.execute(sa.select(PredictionRow))).one()
    assert row.status == "processing"
    with pytest.raises(NotFound, match="pred-2"):
        await store.set_prediction_status(generation.id, "pred-2", "failed")


# --- listing ---


async def test_list_pages_newest_first(store: GenerationStore, clock: FakeClock) -> None:
    ids = []
    for index in range(7):
        ids.append((await store.create(REQUEST, provider="replicate")).id)
        if index != 2:  # the third and fourth jobs share a timestamp: the id breaks the tie
            clock.advance(0.000001)
    expected = list(reversed(ids))

    for limit in (1, 2, 3, 7, 10):
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page, cursor = await store.list(limit=limit, cursor=cursor)
            assert len(page) <= limit
            seen += [generation.id for generation in page]
            pages += 1
            if cursor is None:
                break
        assert seen == expected, limit
        assert pages == max(1, -(-7 // limit))


async def test_list_returns_full_jobs(store: GenerationStore) -> None:
    generation = await _running(store)
    await store.add_prediction(generation.id, PredictionRecord("pred-1", {"a": 1}, 2))
    done = await _finish(store, generation.id, JobStatus.SUCCEEDED)

    page, cursor = await store.list(limit=10, cursor=None)
    assert (page, cursor) == ([done], None)


async def test_list_of_nothing(store: GenerationStore) -> None:
    assert await store.list(limit=5, cursor=None) == ([], None)


@pytest.mark.parametrize("limit", [0, -1, MAX_LIST_LIMIT + 1])
async def test_list_limit_is_bounded(store: GenerationStore, limit: int) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await store.list(limit=limit, cursor=None)
    assert caught.value.field == "limit"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !",
        _b64(b"not json"),
        _b64(b'{"a": 1}'),
        _b64(b'["2030-01-01T00:00:00", "gen_x"]'),  # naive
        _b64(b'["yesterday", "gen_x"]'),
        _b64(b'["2030-01-01T00:00:00+00:00", 5]'),
        _b64(b'["2030-01-01T00:00:00+00:00"]'),
    ],
)
async def test_list_rejects_a_malformed_cursor(store: GenerationStore, cursor: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await store.list(limit=5, cursor=cursor)
    assert caught.value.field == "cursor"


async def test_list_unfinished_is_queued_and_running_oldest_first(
    store: GenerationStore, clock: FakeClock
) -> None:
    states = [None, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, None]
    states += [JobStatus.CANCELED, JobStatus.RUNNING]
    unfinished = []
    for state in states:
        generation = await store.create(REQUEST, provider="replicate")
        clock.advance(1)
        if state is not None:
            generation = await store.mark_running(generation.id)
            if state is not JobStatus.RUNNING:
                await _finish(store, generation.id, state)
        if state in (None, JobStatus.RUNNING):
            unfinished.append(await store.get(generation.id))

    assert await store.list_unfinished() == unfinished


# --- idempotency ---


async def test_find_by_idempotency_key(store: GenerationStore) -> None:
    assert await store.find_by_idempotency_key("k") is None
    created = await store.create(REQUEST, provider="replicate", idempotency_key="k")
    await store.create(REQUEST, provider="replicate")
    await store.create(REQUEST, provider="replicate")  # many jobs without a key are fine

    assert await store.find_by_idempotency_key("k") == created
    assert await store.find_by_idempotency_key("other") is None


async def test_a_reused_idempotency_key_names_the_existing_job(store: GenerationStore) -> None:
    created = await store.create(
        REQUEST, provider="replicate", idempotency_key="k", request_hash="h1"
    )

    with pytest.raises(IdempotencyKeyInUse) as caught:
        await store.create(REQUEST, provider="replicate", idempotency_key="k", request_hash="h2")
    assert caught.value.existing == created
    assert caught.value.existing.request_hash == "h1"
    assert (await store.list(limit=10, cursor=None))[0] == [created]


async def test_a_released_idempotency_key_can_be_used_again(
    store: GenerationStore, clock: FakeClock
) -> None:
    old = await store.create(REQUEST, provider="replicate", idempotency_key="k")
    clock.advance(86_400)
    await store.release_idempotency_key(old.id)

    assert await store.find_by_idempotency_key("k") is None
    assert (await store.get(old.id)).idempotency_key is None
    new = await store.create(REQUEST, provider="replicate", idempotency_key="k")
    assert await store.find_by_idempotency_key("k") == new
    with pytest.raises(NotFound, match="gen_missing"):
        await store.release_idempotency_key("gen_missing")


async def test_racing_creates_with_one_key_make_one_job(url: str) -> None:
    stores = [await open_store(url) for _ in range(3)]
    try:
        outcomes = await asyncio.gather(
            *(s.create(REQUEST, provider="replicate", idempotency_key="k") for s in stores),
            return_exceptions=True,
        )
        created = [o for o in outcomes if isinstance(o, Generation)]
        reused = [o for o in outcomes if isinstance(o, IdempotencyKeyInUse)]
        assert (len(created), len(reused)) == (1, 2)
        assert all(error.existing == created[0] for error in reused)
    finally:
        for store in stores:
            await store.aclose()


# --- health and ids ---


async def test_check_passes_on_a_live_database(store: GenerationStore) -> None:
    await store.check()


async def test_check_raises_when_the_database_is_unusable(tmp_path: Path) -> None:
    path = tmp_path / "imagegen.db"
    path.write_bytes(b"this is not a SQLite database" * 100)
    store = GenerationStore(create_async_engine(f"sqlite+aiosqlite:///{path}"))
    with pytest.raises(DatabaseError):
        await store.check()
    await store.aclose()


def test_new_generation_id_is_a_time_ordered_ulid() -> None:
    first = new_generation_id()
    ids = {new_generation_id() for _ in range(1000)}

    assert all(re.fullmatch(r"gen_[0-9a-hjkmnp-tv-z]{26}", value) for value in ids | {first})
    assert len(ids) == 1000
    assert first[4:14] <= min(ids)[4:14]  # the first 10 characters are the millisecond time


def test_a_stored_request_ignores_fields_this_version_does_not_know() -> None:
    data = {"model": "m", "prompt": "p", "num_images": 1, "width": 8, "height": 8, "future": 1}
    assert request_from_json(data) == GenerationRequest("m", "p", 1, 8, 8)


# --- input images ---


async def test_input_images_are_kept_with_the_job_and_indexed_by_key(
    store: GenerationStore,
) -> None:
    photo = StoredImage("a" * 64 + ".png", "image/png", 640, 480, 5000, "https://example.com/p.png")
    mask = StoredImage("b" * 64 + ".png", "image/png", 640, 480, 300)
    request = replace(REQUEST, images=(photo,), mask=mask)
    created = await store.create(request, provider="replicate")
    running = await store.mark_running(created.id)
    assert created.request == request
    assert running.request.images == (photo,)
    assert (await store.get(created.id)).request.mask == mask

    async with store.engine.connect() as connection:
        rows = (
            await connection.execute(
                sa.text(
                    "SELECT position, role, key, width, source_url FROM input_images "
                    "WHERE generation_id = :id ORDER BY position"
                ),
                {"id": created.id},
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        (0, "image", photo.key, 640, photo.source_url),
        (1, "mask", mask.key, 640, None),
    ]


def test_a_request_stored_before_input_images_reads_without_them() -> None:
    old = {"model": "m", "prompt": "p", "num_images": 1, "width": 64, "height": 64}
    assert request_from_json(old).images == ()
    assert request_from_json(old).mask is None
