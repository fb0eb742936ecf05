"""SQLite: a write that finds the writer idle runs at once on the event loop, on the writer's own
connection; one that finds it busy, or the file locked by another process, goes to the writer's
thread as before and never blocks the loop. The WAL is checkpointed on the thread, not by a
commit on the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import imagegen.db.database
from imagegen.db import PoolSettings
from imagegen.db.database import SQLiteDatabase
from imagegen.db.engine import sqlite_driver
from imagegen.errors import StoreBusy

from . import locked

MAIN = threading.main_thread().name


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "inline.db"


def in_wal(path: Path) -> None:
    """The file in WAL mode, as the migration leaves it."""
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.close()


@pytest.fixture
async def db(path: Path) -> AsyncIterator[SQLiteDatabase]:
    in_wal(path)
    database = SQLiteDatabase(make_url(f"sqlite:///{path}"), PoolSettings(timeout=1.0))
    await database.write(
        lambda c: sqlite_driver(c).execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
    )
    yield database
    await database.aclose()


def insert(key: str, threads: list[str], value: str = "") -> Callable[[sa.Connection], str]:
    def work(connection: sa.Connection) -> str:
        threads.append(threading.current_thread().name)
        sqlite_driver(connection).execute("INSERT INTO t VALUES (?, ?)", (key, value))
        return key

    return work


def committed(path: Path) -> set[str]:
    """The keys another connection sees: only what was committed."""
    other = sqlite3.connect(path)
    try:
        return {row[0] for row in other.execute("SELECT k FROM t")}
    finally:
        other.close()


async def test_a_write_on_an_idle_writer_runs_on_the_loop_and_is_committed_when_it_returns(
    db: SQLiteDatabase, path: Path
) -> None:
    threads: list[str] = []
    assert await db.write(insert("a", threads)) == "a"
    assert threads == [MAIN]
    assert committed(path) == {"a"}


async def test_a_failing_write_on_the_loop_is_rolled_back_and_the_next_one_commits(
    db: SQLiteDatabase, path: Path
) -> None:
    threads: list[str] = []

    def fails(connection: sa.Connection) -> None:
        insert("undone", threads)(connection)
        raise ValueError("after its insert")

    with pytest.raises(ValueError):
        await db.write(fails)
    await db.write(insert("x", threads))
    with pytest.raises(sqlite3.IntegrityError):  # the driver's own error, as on the thread
        await db.write(insert("x", threads))
    await db.write(insert("after", threads))
    assert threads == [MAIN] * 4
    assert committed(path) == {"x", "after"}


async def test_a_file_another_process_locked_sends_the_write_to_the_thread_without_blocking(
    db: SQLiteDatabase, path: Path
) -> None:
    threads: list[str] = []
    await db.write(insert("first", threads))  # the loop's: the connection has no busy timeout
    other = locked(path)
    writing = asyncio.ensure_future(db.write(insert("waits", threads)))
    ticks = 0
    started = time.monotonic()
    while time.monotonic() - started < 0.2:  # the loop runs while the write waits for the lock
        await asyncio.sleep(0.01)
        ticks += 1
    assert not writing.done()
    other.rollback()
    other.close()
    assert await writing == "waits"  # the thread waited with its busy timeout back
    assert ticks >= 3  # a loop blocked by the wait would have ticked once
    assert threads == [MAIN, "imagegen-db-writer-0"]
    assert committed(path) == {"first", "waits"}


async def test_a_lock_held_past_the_busy_timeout_is_store_busy(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imagegen.db.engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    in_wal(path)
    database = SQLiteDatabase(make_url(f"sqlite:///{path}"), PoolSettings(timeout=1.0))
    try:
        threads: list[str] = []
        await database.write(lambda c: sqlite_driver(c).execute("CREATE TABLE t (k, v)"))
        other = locked(path)
        started = time.monotonic()
        try:
            with pytest.raises(StoreBusy):
                await database.write(insert("refused", threads))
        finally:
            other.rollback()
            other.close()
        assert time.monotonic() - started >= 0.09  # the thread waited its busy timeout
        await database.write(insert("works", threads))
        assert threads == [MAIN]  # the refused write never ran
    finally:
        await database.aclose()


async def test_writes_arriving_while_the_thread_runs_one_queue_and_commit_as_one_group(
    db: SQLiteDatabase, path: Path, groups: list[int]
) -> None:
    threads: list[str] = []
    other = locked(path)
    first = asyncio.ensure_future(db.write(insert("first", threads)))
    await asyncio.sleep(0.05)  # on the thread, waiting for the lock
    rest = [asyncio.ensure_future(db.write(insert(key, threads))) for key in "abc"]
    await asyncio.sleep(0.02)
    other.rollback()
    other.close()
    assert await asyncio.gather(first, *rest) == ["first", "a", "b", "c"]
    assert groups == [1, 3]
    assert set(threads) == {"imagegen-db-writer-0"}
    threads.clear()
    await db.write(insert("idle again", threads))
    assert threads == [MAIN]


async def test_the_wal_is_checkpointed_on_the_thread_not_by_a_commit_on_the_loop(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imagegen.db.database, "CHECKPOINT_EVERY", 5)
    checkpoints: list[str] = []
    checkpoint = SQLiteDatabase._checkpoint

    def recording(self: SQLiteDatabase) -> None:
        checkpoints.append(threading.current_thread().name)
        checkpoint(self)

    monkeypatch.setattr(SQLiteDatabase, "_checkpoint", recording)
    in_wal(path)
    size = path.stat().st_size
    database = SQLiteDatabase(make_url(f"sqlite:///{path}"), PoolSettings())
    try:
        threads: list[str] = []
        await database.write(lambda c: sqlite_driver(c).execute("CREATE TABLE t (k, v)"))
        for key in "abc":
            await database.write(insert(key, threads, value="x" * 20_000))
        await asyncio.sleep(0.1)
        assert path.stat().st_size == size  # four commits: all still in the WAL
        assert not checkpoints
        await database.write(insert("d", threads, value="x" * 20_000))  # the fifth
        for _ in range(100):
            if checkpoints:
                break
            await asyncio.sleep(0.01)
        assert threads == [MAIN] * 4
        assert checkpoints == ["imagegen-db-writer-0"]
        assert path.stat().st_size > size + 4 * 20_000  # the rows are in the database file now
    finally:
        await database.aclose()


async def test_commits_on_the_writers_connection_never_checkpoint_by_themselves(
    db: SQLiteDatabase,
) -> None:
    def autocheckpoint(connection: sa.Connection) -> int:
        return int(sqlite_driver(connection).execute("PRAGMA wal_autocheckpoint").fetchone()[0])

    assert await db.write(autocheckpoint) == 0


async def test_without_inline_writes_every_write_goes_to_the_thread(path: Path) -> None:
    database = SQLiteDatabase(make_url(f"sqlite:///{path}"), PoolSettings(), inline_writes=False)
    try:
        threads: list[str] = []
        await database.write(lambda c: sqlite_driver(c).execute("CREATE TABLE t (k, v)"))
        await database.write(insert("a", threads))
        assert threads == ["imagegen-db-writer-0"]
    finally:
        await database.aclose()


async def test_a_file_not_in_wal_mode_sends_every_write_to_the_thread(path: Path) -> None:
    database = SQLiteDatabase(make_url(f"sqlite:///{path}"), PoolSettings())  # rollback journal
    try:
        threads: list[str] = []
        await database.write(lambda c: sqlite_driver(c).execute("CREATE TABLE t (k, v)"))
        await database.write(insert("a", threads))
        await database.write(insert("b", threads))
        assert threads == ["imagegen-db-writer-0"] * 2
    finally:
        await database.aclose()
