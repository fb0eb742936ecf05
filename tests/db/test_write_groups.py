"""SQLite: writes that queue behind the writer run together, one transaction for the group, each
in a savepoint of its own: one that raises is undone alone, the others commit, and no caller hears
of its write before the COMMIT.

These databases send every write to the writer's thread (``inline_writes=False``), so that a write
blocking its thread can hold the others back; with writes on the event loop when the writer is
idle (the default), they queue the same way behind a write the thread is running
(``test_inline_writes.py``)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import imagegen.db.database
from imagegen.db import PoolSettings
from imagegen.db.database import SQLiteDatabase
from imagegen.db.engine import sqlite_driver
from imagegen.errors import StoreBusy


@pytest.fixture
async def db(tmp_path: Path, groups: list[int]) -> AsyncIterator[SQLiteDatabase]:
    database = SQLiteDatabase(
        make_url(f"sqlite:///{tmp_path / 'groups.db'}"), PoolSettings(), inline_writes=False
    )
    await database.write(
        lambda connection: connection.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY)")
    )
    yield database
    await database.aclose()


def insert(key: str, *, then: Callable[[], Any] = lambda: None) -> Callable[[sa.Connection], Any]:
    def work(connection: sa.Connection) -> Any:
        sqlite_driver(connection).execute("INSERT INTO t VALUES (?)", (key,))
        return then()

    return work


def fail() -> None:
    raise ValueError("this write fails after its insert")


async def keys(db: SQLiteDatabase) -> set[str]:
    rows = await db.read(lambda c: sqlite_driver(c).execute("SELECT k FROM t").fetchall())
    return {row[0] for row in rows}


async def queued_behind_a_blocked_write(
    db: SQLiteDatabase, works: list[Callable[[sa.Connection], Any]], **options: Any
) -> list[Any]:
    """Run ``works`` queued while the writer is busy with another write, so they go as one
    group; their outcomes (a result or the exception)."""
    release = threading.Event()
    blocker = asyncio.ensure_future(db.write(insert("blocker", then=release.wait)))
    await asyncio.sleep(0.05)  # the writer thread is inside the blocker
    pending = [asyncio.ensure_future(db.write(work, **options)) for work in works]
    await asyncio.sleep(0.02)
    release.set()
    await blocker
    return await asyncio.gather(*pending, return_exceptions=True)


async def test_queued_writes_commit_as_one_group_and_a_failing_one_is_undone_alone(
    db: SQLiteDatabase, groups: list[int]
) -> None:
    groups.clear()  # the table's creation
    works = [insert("a", then=lambda: 1), insert("b", then=fail), insert("c", then=lambda: 3)]
    outcomes = await queued_behind_a_blocked_write(db, works)
    assert groups == [1, 3]  # the blocker alone, then the three together
    assert outcomes[0] == 1
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2] == 3
    assert await keys(db) == {"blocker", "a", "c"}


async def test_a_write_conflicting_in_a_group_is_the_drivers_error_and_the_others_commit(
    db: SQLiteDatabase,
) -> None:
    outcomes = await queued_behind_a_blocked_write(db, [insert("x"), insert("x"), insert("y")])
    assert outcomes[0] is None
    assert isinstance(outcomes[1], sqlite3.IntegrityError)  # raised by the driver itself
    assert outcomes[2] is None
    assert await keys(db) == {"blocker", "x", "y"}


async def test_a_write_through_sqlalchemys_transaction_commits_and_the_group_goes_on(
    db: SQLiteDatabase,
) -> None:
    def through_sqlalchemy(connection: sa.Connection) -> str:
        connection.exec_driver_sql("INSERT INTO t VALUES ('sa')")
        return "sa"

    def failing_through_sqlalchemy(connection: sa.Connection) -> None:
        connection.exec_driver_sql("INSERT INTO t VALUES ('sa-undone')")
        fail()

    works = [insert("a"), through_sqlalchemy, failing_through_sqlalchemy, insert("b")]
    outcomes = await queued_behind_a_blocked_write(db, works)
    assert outcomes[:2] == [None, "sa"]
    assert isinstance(outcomes[2], ValueError)
    assert outcomes[3] is None
    assert await keys(db) == {"blocker", "a", "sa", "b"}
    assert not await db.write(lambda c: c.in_transaction())  # SQLAlchemy's was ended


async def test_callers_hear_of_a_grouped_write_only_once_it_is_committed(
    db: SQLiteDatabase,
) -> None:
    seen: list[bool] = []

    async def write_and_look(key: str) -> None:
        await db.write(insert(key))
        seen.append(key in await keys(db))  # another connection: only committed rows

    release = threading.Event()
    blocker = asyncio.ensure_future(db.write(insert("blocker", then=release.wait)))
    await asyncio.sleep(0.05)
    lookers = [asyncio.ensure_future(write_and_look(key)) for key in "pqrs"]
    await asyncio.sleep(0.02)
    release.set()
    await asyncio.gather(blocker, *lookers)
    assert seen == [True] * 4


async def test_a_new_job_queued_in_a_group_past_its_patience_never_runs(
    tmp_path: Path,
) -> None:
    database = SQLiteDatabase(
        make_url(f"sqlite:///{tmp_path / 'patience.db'}"),
        PoolSettings(timeout=0.05),
        inline_writes=False,
    )
    try:
        await database.write(lambda c: c.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY)"))
        release = threading.Event()
        blocker = asyncio.ensure_future(database.write(insert("blocker", then=release.wait)))
        await asyncio.sleep(0.05)
        running = asyncio.ensure_future(database.write(insert("running")))
        new = asyncio.ensure_future(database.write(insert("new"), admission=True))
        await asyncio.sleep(0.1)  # past the new job's patience
        release.set()
        await asyncio.gather(blocker, running)
        with pytest.raises(StoreBusy):
            await new
        assert await keys(database) == {"blocker", "running"}
    finally:
        await database.aclose()


async def test_a_group_that_cannot_begin_fails_each_of_its_writes_and_the_next_one_works(
    db: SQLiteDatabase, groups: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    blocker = asyncio.ensure_future(db.write(insert("blocker", then=release.wait)))
    await asyncio.sleep(0.05)  # the blocker has begun: the group's BEGIN will fail
    monkeypatch.setattr(imagegen.db.database, "_BEGIN_WRITE", "BEGIN NOT A STATEMENT")
    pending = [asyncio.ensure_future(db.write(insert(key))) for key in "uv"]
    await asyncio.sleep(0.02)
    groups.clear()
    release.set()
    await blocker
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert groups == [2]
    assert all(isinstance(outcome, sa.exc.OperationalError) for outcome in outcomes), outcomes
    monkeypatch.undo()
    await db.write(insert("after"))
    assert await keys(db) == {"blocker", "after"}


async def test_a_plain_call_for_the_writer_thread_runs_alone_between_grouped_writes(
    db: SQLiteDatabase, groups: list[int]
) -> None:
    release = threading.Event()
    blocker = asyncio.ensure_future(db.write(insert("blocker", then=release.wait)))
    await asyncio.sleep(0.05)
    first = asyncio.ensure_future(db.write(insert("a")))
    plain = asyncio.ensure_future(db._writer.run(lambda: "plain"))
    last = asyncio.ensure_future(db.write(insert("b")))
    await asyncio.sleep(0.02)
    groups.clear()
    release.set()
    await blocker
    assert await asyncio.gather(first, plain, last) == [None, "plain", None]
    assert groups == [3]
    assert await keys(db) == {"blocker", "a", "b"}


async def test_a_grouped_write_whose_caller_was_cancelled_before_its_turn_never_runs(
    db: SQLiteDatabase, groups: list[int]
) -> None:
    release = threading.Event()
    blocker = asyncio.ensure_future(db.write(insert("blocker", then=release.wait)))
    await asyncio.sleep(0.05)
    first_started = threading.Event()
    go_on = threading.Event()

    def first_then_wait() -> None:
        first_started.set()
        go_on.wait()

    first = asyncio.ensure_future(db.write(insert("first", then=first_then_wait)))
    gone = asyncio.ensure_future(db.write(insert("gone")))
    await asyncio.sleep(0.02)
    groups.clear()
    release.set()
    await blocker
    await asyncio.to_thread(first_started.wait)  # the group runs; "gone" waits for its turn
    gone.cancel()
    await asyncio.sleep(0.01)
    go_on.set()
    await first
    assert groups == [2]
    assert await keys(db) == {"blocker", "first"}
