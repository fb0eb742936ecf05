"""Fixed statements (db/compiled.py) bind, read and fail exactly as ``Connection.execute`` does,
on SQLite and PostgreSQL; and the SQLite store's transactions, begun and ended on the driver's
connection, commit or roll back whole, whichever way their statements ran."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from imagegen.db import GenerationStore, open_store
from imagegen.db.compiled import Fixed
from imagegen.db.tables import GENERATIONS, IMAGES, PREDICTIONS

from . import BACKENDS, database_url

PARIS = timezone(timedelta(hours=2))
CREATED = datetime(2026, 5, 17, 12, 30, 15, 123456, tzinfo=UTC)


def job(generation_id: str, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": generation_id,
        "status": "queued",
        "model": "o/m",
        "prompt": "a lighthouse, “at dusk” ✓",
        "provider": "replicate",
        "request": {"model": "o/m", "prompt": "x", "sizes": [1, 2.5, None], "nested": {"a": True}},
        "created_at": CREATED,
        "updated_at": CREATED.astimezone(PARIS),  # stored, and read back, in UTC
        "started_at": None,
        "completed_at": None,
        "deadline_at": CREATED + timedelta(minutes=5),
        "error": None,
        "error_code": None,
        "images_missing": 0,
        "provider_urls": ["https://example.test/a.png"],
        "metadata": {"k": "v", "n": 3},
        "idempotency_key": None,
        "request_hash": None,
        "webhook_url": None,
        "webhook_events": None,
        "lease_owner": "me",
        "lease_expires_at": CREATED + timedelta(seconds=30),
        "owner": None,
        "num_images": 2,
        "cost": 0.003,
        "predict_seconds": None,
    }
    return values | changes


INSERT_JOB = Fixed(sa.insert(GENERATIONS))
JOB = Fixed(sa.select(GENERATIONS).where(GENERATIONS.c.id == sa.bindparam("generation_id")))
START = Fixed(
    sa.update(GENERATIONS)
    .where(
        GENERATIONS.c.id == sa.bindparam("generation_id"),
        GENERATIONS.c.status.in_([sa.literal("queued", GENERATIONS.c.status.type)]),
    )
    .returning(GENERATIONS.c.id, GENERATIONS.c.started_at, GENERATIONS.c.metadata)
)
INSERT_IMAGES = Fixed(sa.insert(IMAGES))
INSERT_PREDICTION = Fixed(sa.insert(PREDICTIONS))


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[GenerationStore]:
    async with database_url(request.param, tmp_path) as url:
        opened = await open_store(url)
        yield opened
        await opened.aclose()


def _as_sqlalchemy_reads(connection: sa.Connection, generation_id: str) -> dict[str, Any]:
    stmt = sa.select(GENERATIONS).where(GENERATIONS.c.id == generation_id)
    return dict(connection.execute(stmt).mappings().one())


async def test_a_row_written_and_read_by_fixed_statements_is_what_sqlalchemy_reads(
    store: GenerationStore,
) -> None:
    await store.database.write(lambda connection: INSERT_JOB.execute(connection, job("g1")))
    mine = await store.database.read(lambda c: JOB.first(c, {"generation_id": "g1"}))
    theirs = await store.database.read(lambda c: _as_sqlalchemy_reads(c, "g1"))

    assert mine == theirs
    assert mine is not None
    assert mine["updated_at"] == CREATED
    assert mine["updated_at"].tzinfo == UTC
    assert mine["request"]["sizes"] == [1, 2.5, None]
    assert mine["webhook_events"] is None
    assert mine["cost"] == 0.003


async def test_a_row_written_by_sqlalchemy_reads_the_same_through_a_fixed_statement(
    store: GenerationStore,
) -> None:
    def insert(connection: sa.Connection) -> None:
        connection.execute(sa.insert(GENERATIONS), job("g2", webhook_events=["completed"]))

    await store.database.write(insert)
    mine = await store.database.read(lambda c: JOB.rows(c, {"generation_id": "g2"}))
    theirs = await store.database.read(lambda c: _as_sqlalchemy_reads(c, "g2"))

    assert mine == [theirs]


async def test_returning_rows_constants_rowcount_and_executemany(store: GenerationStore) -> None:
    started = CREATED.astimezone(PARIS) + timedelta(seconds=1)
    start = {"generation_id": "g3", "status": "running", "started_at": started}

    def work(connection: sa.Connection) -> tuple[Any, ...]:
        INSERT_JOB.execute(connection, job("g3"))
        first = START.execute(connection, start)
        again = START.execute(connection, start)
        image = {
            "generation_id": "g3", "content_type": "image/png", "width": 1, "height": 1,
            "size_bytes": 5, "source_url": None, "revised_prompt": None,
        }  # fmt: skip
        INSERT_IMAGES.executemany(
            connection, [image | {"position": n, "key": f"k{n}"} for n in range(3)]
        )
        count = connection.execute(sa.select(sa.func.count()).select_from(IMAGES)).scalar_one()
        return first, again, count

    def move_back(connection: sa.Connection) -> int:
        stmt = sa.update(GENERATIONS).values(status="queued")
        return int(connection.execute(stmt).rowcount)

    first, again, count = await store.database.write(work)
    assert first.rows == [{"id": "g3", "started_at": started, "metadata": {"k": "v", "n": 3}}]
    assert first.rows[0]["started_at"].tzinfo == UTC
    assert again.rows == []  # the literal 'queued' bound: the job is running now
    assert count == 3
    assert await store.database.write(move_back) == 1
    updated = await store.database.write(lambda c: START.rowcount(c, start))
    assert updated == 1


async def test_a_driver_error_is_sqlalchemys_and_the_transaction_rolls_back_whole(
    store: GenerationStore,
) -> None:
    def twice(connection: sa.Connection) -> None:
        INSERT_JOB.execute(connection, job("g4"))
        connection.execute(sa.insert(GENERATIONS), job("g5"))
        INSERT_JOB.execute(connection, job("g4"))

    with pytest.raises(sa.exc.IntegrityError) as caught:
        await store.database.write(twice)
    assert caught.value.orig is not None
    assert "INSERT INTO generations" in str(caught.value.statement)
    found = await store.database.read(
        lambda c: c.execute(sa.select(GENERATIONS.c.id)).scalars().all()
    )
    assert found == []  # neither the Fixed insert nor SQLAlchemy's stayed


async def test_an_error_of_the_work_itself_rolls_back_both_kinds_of_statement(
    store: GenerationStore,
) -> None:
    def fails(connection: sa.Connection) -> None:
        INSERT_JOB.execute(connection, job("g6"))
        connection.execute(sa.insert(GENERATIONS), job("g7"))
        raise RuntimeError("the work changed its mind")

    with pytest.raises(RuntimeError):
        await store.database.write(fails)

    def both(connection: sa.Connection) -> None:
        connection.execute(sa.insert(GENERATIONS), job("g8"))
        INSERT_JOB.execute(connection, job("g9"))

    await store.database.write(both)  # the same connection goes on working
    found = await store.database.read(
        lambda c: c.execute(sa.select(GENERATIONS.c.id).order_by(GENERATIONS.c.id)).scalars().all()
    )
    assert found == ["g8", "g9"]


async def test_listeners_of_cursor_events_hear_each_fixed_statement(
    store: GenerationStore,
) -> None:
    heard: list[tuple[str, str, bool]] = []

    def before(_c: object, _cursor: object, sql: str, _p: object, _x: object, many: bool) -> None:
        heard.append(("before", sql.split(None, 1)[0], many))

    def after(_c: object, _cursor: object, sql: str, _p: object, _x: object, many: bool) -> None:
        heard.append(("after", sql.split(None, 1)[0], many))

    sa.event.listen(sa.Engine, "before_cursor_execute", before)
    sa.event.listen(sa.Engine, "after_cursor_execute", after)
    try:
        await store.database.write(lambda c: INSERT_JOB.execute(c, job("g10")))
        await store.database.read(lambda c: JOB.rows(c, {"generation_id": "g10"}))
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", before)
        sa.event.remove(sa.Engine, "after_cursor_execute", after)

    assert [entry for entry in heard if entry[1] != "BEGIN"] == [
        ("before", "INSERT", False),
        ("after", "INSERT", False),
        ("before", "SELECT", False),
        ("after", "SELECT", False),
    ]


async def test_a_naive_time_is_refused_before_anything_runs(store: GenerationStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.database.write(
            lambda c: INSERT_JOB.execute(c, job("g11", created_at=datetime(2026, 1, 1)))
        )


async def test_statements_whose_sql_depends_on_their_values_are_refused(
    store: GenerationStore,
) -> None:
    expanding = Fixed(
        sa.select(GENERATIONS.c.id).where(GENERATIONS.c.id.in_(sa.bindparam("ids", expanding=True)))
    )
    with pytest.raises(ValueError, match="same SQL"):
        await store.database.read(lambda c: expanding.rows(c, {"ids": ["a", "b"]}))
    unbound = Fixed(sa.select(GENERATIONS.c.id).where(GENERATIONS.c.id == sa.bindparam("id")))
    with pytest.raises(ValueError, match="has no value"):
        await store.database.read(lambda c: unbound.rows(c, {}))


class _CutOffCursor:
    """A driver cursor whose statement is cut off mid-way, as a cancelled task's is."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, *args: Any) -> Any:
        raise KeyboardInterrupt  # a BaseException, like asyncio.CancelledError

    executemany = execute

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _CuttingConnection:
    """A ``sqlite3`` connection whose cursors are cut off once ``cut`` is set."""

    cut = False

    def __init__(self) -> None:
        import sqlite3

        self._connection = sqlite3.connect(":memory:", check_same_thread=False)

    def cursor(self, *args: Any) -> Any:
        cursor = self._connection.cursor(*args)
        return _CutOffCursor(cursor) if _CuttingConnection.cut else cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def test_a_statement_cut_off_mid_way_leaves_its_connection_invalidated() -> None:
    """A connection whose statement was interrupted is never handed out again (a PostgreSQL
    transaction left aborted poisoned every later use of the pooled connection)."""
    engine = sa.create_engine("sqlite://", creator=_CuttingConnection)
    metadata = sa.MetaData()
    table = sa.Table("t", metadata, sa.Column("id", sa.Integer, primary_key=True))
    metadata.create_all(engine)
    insert = Fixed(table.insert())
    try:
        with engine.connect() as connection:
            first = connection.connection.dbapi_connection
            _CuttingConnection.cut = True
            with pytest.raises(KeyboardInterrupt):
                insert.execute(connection, {"id": 1})
            _CuttingConnection.cut = False
            assert connection.invalidated
        with engine.connect() as connection:
            assert connection.connection.dbapi_connection is not first
    finally:
        _CuttingConnection.cut = False
        engine.dispose()
