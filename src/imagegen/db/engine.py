"""The engines imagegen's database runs on, and how many connections they pool.

PostgreSQL: one ``AsyncEngine`` (asyncpg) with up to twice ``PoolSettings.size`` connections,
opened as the load needs them and kept, so a load needing a few more than ``size`` does not open
and close a connection (a server process, asyncpg's setup) every few transactions; the pool hands
out the connection returned last, so a light load reuses a few warm ones. A new job's
transaction or a read waits ``PoolSettings.timeout`` seconds at most for one, then the store
answers ``StoreBusy`` (503), not a 30-second hang and a 500 (a running job's writes go first and
wait: ``db/database.py``). A pooled connection the server closed (a restart, an idle timeout) is
replaced when it is checked out (``replace_dead_connections``): at once when the driver knows it
is closed, and after a failed ping when it rested more than ``PING_AFTER_IDLE`` seconds. One used
a moment ago is not pinged: a ping per transaction cost three round trips (BEGIN, the ping,
ROLLBACK).

SQLite: synchronous engines (the ``sqlite3`` driver) only. The store's transactions run on
``sqlite_engine``s on threads of their own (``db/database.py``), and ``open_store`` migrates on
one too; an ``AsyncEngine`` (aiosqlite) is made only when asked for (``create_engine``,
``GenerationStore.engine``). SQLAlchemy's asyncio layer imports its ORM, a sizeable part of
start-up, so it is imported only by what uses it. SQLite files get WAL mode (set by the
migration), a busy timeout and enforced foreign keys.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from imagegen.db.json_text import json_text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

SQLITE_BUSY_TIMEOUT_MS = 10_000
PING_AFTER_IDLE = 5.0  # seconds a pooled PostgreSQL connection may rest before it is pinged
_CHECKED_IN_AT = "imagegen_checked_in_at"  # in a pool entry's ``info``: when it was last returned


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How many connections the store keeps, and how long a new job's transaction waits for one.

    ``size``: PostgreSQL connections a process may open, halved (each is kept once opened).
    ``timeout``: seconds a new job's transaction or a read may wait for a connection, or on
    SQLite for its turn at the writer (a running job's writes wait as long as it takes).
    ``sqlite_readers``: SQLite connections (and threads) for reads, beside the one writer.
    """

    size: int = 10
    timeout: float = 5.0
    sqlite_readers: int = 2


def create_engine(url: str | URL, pool: PoolSettings | None = None) -> AsyncEngine:
    """An ``AsyncEngine`` for ``url``; for SQLite, create the file's directory and set pragmas."""
    from sqlalchemy.ext.asyncio import create_async_engine

    parsed = make_url(url)
    pool = pool or PoolSettings()
    if parsed.get_backend_name() != "sqlite":
        engine = create_async_engine(
            parsed,
            pool_size=2 * pool.size,
            max_overflow=0,
            pool_use_lifo=True,
            pool_timeout=pool.timeout,
        )
        replace_dead_connections(engine.sync_engine.pool, engine.dialect.do_ping)
        return engine
    _ensure_sqlite_directory(parsed)
    engine = create_async_engine(parsed, pool_timeout=pool.timeout)
    sa.event.listen(engine.sync_engine, "connect", set_sqlite_pragmas)
    return engine


def replace_dead_connections(
    pool: sa.Pool,
    ping: Callable[[Any], object],
    *,
    idle: float = PING_AFTER_IDLE,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """On checkout, replace a pooled connection that is closed, or idle more than ``idle``
    seconds and failing ``ping`` (SQLAlchemy's pessimistic disconnect handling, pinging only
    connections that rested): ``DisconnectionError`` makes the pool open a new one. A new
    connection is never pinged; it has no check-in time yet."""

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN_AT] = monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN_AT)
        if since is None:
            return
        driver = getattr(dbapi_connection, "driver_connection", None)
        is_closed = getattr(driver, "is_closed", None)
        if is_closed is not None and is_closed():
            raise sa.exc.DisconnectionError("the server closed this pooled connection")
        if monotonic() - since > idle:
            try:
                ping(dbapi_connection)
            except Exception as exc:
                message = f"a pooled connection failed its ping: {exc!r}"
                raise sa.exc.DisconnectionError(message) from exc

    sa.event.listen(pool, "checkin", checked_in)
    sa.event.listen(pool, "checkout", checkout)


def sqlite_engine(
    url: URL, *, connections: int, timeout: float, checkpoints: bool = True
) -> sa.Engine:
    """A synchronous engine (the ``sqlite3`` driver) on the SQLite file of ``url``.

    Its connections leave transactions to their user: the driver's own BEGINs are off, and
    SQLAlchemy's ``Connection.begin`` issues none. ``SQLiteDatabase`` (``db/database.py``)
    opens each transaction itself, with the BEGIN it needs, on the driver's connection.
    No event listener of SQLAlchemy's connections is set: with none, a ``Fixed`` statement
    (``db/compiled.py``) does not look for cursor listeners. Without ``checkpoints`` its
    commits never checkpoint the WAL (``wal_autocheckpoint`` 0): its user does.
    """
    engine = sa.create_engine(
        url.set(drivername="sqlite+pysqlite"),
        pool_size=connections,
        max_overflow=0,
        pool_timeout=timeout,
        json_serializer=json_text,
    )

    def connected(dbapi_connection: Any, record: Any) -> None:
        set_sqlite_pragmas(dbapi_connection, record)
        dbapi_connection.isolation_level = None  # the driver's own BEGINs off
        if not checkpoints:
            dbapi_connection.execute("PRAGMA wal_autocheckpoint = 0")

    sa.event.listen(engine, "connect", connected)
    return engine


def sqlite_driver(connection: sa.Connection) -> sqlite3.Connection:
    """The ``sqlite3`` connection under a connection of a ``sqlite_engine`` (connecting again
    after an invalidation)."""
    return cast(sqlite3.Connection, connection.connection.driver_connection)


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_migration_engine(url: str | URL) -> sa.Engine:
    """A synchronous engine for migrating the SQLite file of ``url`` (its directory created),
    with the pragmas every connection gets; connections are not pooled."""
    parsed = make_url(url)
    _ensure_sqlite_directory(parsed)
    engine = sa.create_engine(parsed.set(drivername="sqlite+pysqlite"), poolclass=sa.pool.NullPool)
    sa.event.listen(engine, "connect", set_sqlite_pragmas)
    return engine


def _ensure_sqlite_directory(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The busy timeout makes writers wait for each other instead of failing at once. WAL (set
    # once per file by migrate) makes NORMAL synchronisation durable enough and fast.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()
