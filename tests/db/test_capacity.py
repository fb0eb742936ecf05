"""A database at capacity is ``StoreBusy`` (503 with Retry-After), never a driver error (500):
a locked SQLite file, a queue longer than the pool timeout, a PostgreSQL pool or server with no
connection to spare. Other database errors pass through unchanged."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

import imagegen.db.engine
from imagegen.db import GenerationStore, PoolSettings, open_store
from imagegen.db.errors import capacity_error
from imagegen.errors import StoreBusy
from imagegen.models import GenerationRequest

from . import locked, postgres_database, server_url

REQUEST = GenerationRequest(model="a/b", prompt="p", num_images=1, width=64, height=64)


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "imagegen.db"


@pytest.fixture
async def sqlite_store(
    sqlite_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[GenerationStore]:
    monkeypatch.setattr(imagegen.db.engine, "SQLITE_BUSY_TIMEOUT_MS", 300)
    store = await open_store(f"sqlite+aiosqlite:///{sqlite_path}", pool=PoolSettings(timeout=0.1))
    yield store
    await store.aclose()


async def test_a_sqlite_file_another_writer_keeps_locked_is_store_busy(
    sqlite_store: GenerationStore, sqlite_path: Path
) -> None:
    other = locked(sqlite_path)
    try:
        with pytest.raises(StoreBusy) as caught:
            await sqlite_store.create(REQUEST, provider="p")
    finally:
        other.rollback()
        other.close()
    assert caught.value.retry_after == 1.0
    assert caught.value.code == "store_busy"
    assert isinstance(caught.value.__cause__, sa.exc.OperationalError)
    await sqlite_store.create(REQUEST, provider="p")  # the lock is gone: it works again


async def test_a_sqlite_write_queued_past_the_pool_timeout_is_refused_and_never_runs(
    sqlite_store: GenerationStore, sqlite_path: Path
) -> None:
    other = locked(sqlite_path)
    first = asyncio.ensure_future(sqlite_store.create(REQUEST, provider="p"))
    await asyncio.sleep(0.02)  # the writer is now waiting on the lock (busy timeout: 0.3 s)
    second = asyncio.ensure_future(sqlite_store.create(REQUEST, provider="p", metadata={"n": 2}))
    await asyncio.sleep(0.15)  # longer than the pool timeout
    other.rollback()
    other.close()

    created = await first
    with pytest.raises(StoreBusy) as caught:
        await second
    assert isinstance(caught.value.__cause__, sa.exc.TimeoutError)
    page, _ = await sqlite_store.list(limit=10)
    assert [job.id for job in page] == [created.id]


async def test_writes_for_running_jobs_go_before_new_jobs(
    sqlite_store: GenerationStore, sqlite_path: Path
) -> None:
    running = await sqlite_store.create(REQUEST, provider="p")
    finished: list[str] = []

    def queue(name: str, write: Awaitable[object]) -> asyncio.Future[object]:
        task = asyncio.ensure_future(write)
        task.add_done_callback(lambda _: finished.append(name))
        return task

    other = locked(sqlite_path)
    blocked = queue("blocked", sqlite_store.create(REQUEST, provider="p"))
    await asyncio.sleep(0.01)  # the writer waits on the lock with it
    new = queue("new job", sqlite_store.create(REQUEST, provider="p"))
    await asyncio.sleep(0.01)
    start = queue("start", sqlite_store.mark_running(running.id))
    await asyncio.sleep(0.01)
    other.rollback()
    other.close()
    await asyncio.gather(blocked, new, start)

    assert finished == ["blocked", "start", "new job"]


async def test_reads_are_not_queued_behind_a_waiting_writer(
    sqlite_store: GenerationStore, sqlite_path: Path
) -> None:
    job = await sqlite_store.create(REQUEST, provider="p")
    other = locked(sqlite_path)
    try:
        writing = asyncio.ensure_future(sqlite_store.create(REQUEST, provider="p"))
        await asyncio.sleep(0.02)
        started = time.monotonic()
        assert await sqlite_store.get(job.id) == job
        assert time.monotonic() - started < 0.1
    finally:
        other.rollback()
        other.close()
    await writing


async def test_other_database_errors_pass_through(sqlite_path: Path) -> None:
    sqlite3.connect(sqlite_path).close()  # an empty file: no tables
    store = GenerationStore(create_async_engine(f"sqlite+aiosqlite:///{sqlite_path}"))
    try:
        with pytest.raises(sa.exc.OperationalError):
            await store.get("gen_x")
    finally:
        await store.aclose()
    assert capacity_error(ValueError("database is locked")) is None


async def test_a_postgres_pool_with_no_connection_free_in_time_is_store_busy() -> None:
    async with postgres_database() as url:
        store = await open_store(url, pool=PoolSettings(size=1, timeout=0.1))
        try:
            async with store.engine.connect(), store.engine.connect():  # the pool and overflow
                started = time.monotonic()
                with pytest.raises(StoreBusy) as caught:
                    await store.get("gen_x")
                assert time.monotonic() - started < 2
            assert isinstance(caught.value.__cause__, sa.exc.TimeoutError)
        finally:
            await store.aclose()


async def test_a_postgres_server_refusing_connections_is_store_busy() -> None:
    role = f"imagegen_full_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(server_url(), isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")
    refused = create_async_engine(make_url(server_url()).set(username=role, password=None))
    store = GenerationStore(refused)
    try:
        with pytest.raises(StoreBusy) as caught:
            await store.get("gen_x")
        assert "53300" in str(caught.value)  # too_many_connections
    finally:
        await store.aclose()
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f"DROP ROLE {role}")
        await admin.dispose()


def pg_sleep(seconds: float) -> Callable[[sa.Connection], object]:
    """A transaction that holds its connection ``seconds`` on the server."""
    return lambda connection: connection.execute(sa.text(f"SELECT pg_sleep({seconds})"))


async def test_postgres_writes_for_running_jobs_go_before_new_jobs() -> None:
    async with postgres_database() as url:
        store = await open_store(url, pool=PoolSettings(size=1, timeout=2))
        try:
            running = await store.create(REQUEST, provider="p")
            finished: list[str] = []

            def queue(name: str, write: Awaitable[object]) -> asyncio.Future[object]:
                task = asyncio.ensure_future(write)
                task.add_done_callback(lambda _: finished.append(name))
                return task

            # Both connections (the pool and its overflow) busy: one comes free at 0.4 s.
            busy = [
                queue(f"busy {n}", store.database.write(pg_sleep(seconds)))
                for n, seconds in ((1, 0.4), (2, 1.0))
            ]
            await asyncio.sleep(0.1)
            new = queue("new job", store.create(REQUEST, provider="p"))
            await asyncio.sleep(0.05)
            start = queue("start", store.mark_running(running.id))
            await asyncio.gather(*busy, new, start)
        finally:
            await store.aclose()
    assert finished == ["busy 1", "start", "new job", "busy 2"]


async def test_a_postgres_write_for_a_running_job_waits_past_the_pool_timeout() -> None:
    """A new job is refused once the pool timeout passes; a running job's write waits for a
    connection however long it takes, and is written."""
    async with postgres_database() as url:
        store = await open_store(url, pool=PoolSettings(size=1, timeout=0.2))
        try:
            running = await store.create(REQUEST, provider="p")
            # Something outside the store's turns holds the pool and its overflow for 0.8 s.
            async with store.engine.connect(), store.engine.connect():
                start = asyncio.ensure_future(store.mark_running(running.id))
                new = asyncio.ensure_future(store.create(REQUEST, provider="p"))
                await asyncio.sleep(0.8)
                assert not start.done()
                with pytest.raises(StoreBusy) as caught:
                    await new
                assert isinstance(caught.value.__cause__, sa.exc.TimeoutError)
            started = await asyncio.wait_for(start, 5)
            page, _ = await store.list(limit=10)
        finally:
            await store.aclose()
    assert started.status.value == "running"
    assert [job.id for job in page] == [running.id]  # the refused job wrote nothing


async def test_a_postgres_read_or_new_job_waiting_past_the_timeout_for_a_turn_is_refused() -> None:
    async with postgres_database() as url:
        store = await open_store(url, pool=PoolSettings(size=1, timeout=0.2))
        try:
            busy = [asyncio.ensure_future(store.database.write(pg_sleep(0.6))) for _ in (1, 2)]
            await asyncio.sleep(0.05)
            started = time.monotonic()
            with pytest.raises(StoreBusy):
                await store.get("gen_x")
            with pytest.raises(StoreBusy):
                await store.create(REQUEST, provider="p")
            assert time.monotonic() - started < 0.55  # refused at the timeout, not at the end
            await asyncio.gather(*busy)
            page, _ = await store.list(limit=10)
        finally:
            await store.aclose()
    assert page == []


async def test_a_postgres_write_of_no_running_job_is_refused_at_the_timeout() -> None:
    """Releasing a failed job's idempotency key comes before a new job: it waits as one does."""
    async with postgres_database() as url:
        store = await open_store(url, pool=PoolSettings(size=1, timeout=0.2))
        try:
            job = await store.create(REQUEST, provider="p", idempotency_key="k")
            async with store.engine.connect(), store.engine.connect():
                started = time.monotonic()
                with pytest.raises(StoreBusy):
                    await asyncio.wait_for(store.release_idempotency_key(job.id), 3)
                assert time.monotonic() - started < 1
        finally:
            await store.aclose()
