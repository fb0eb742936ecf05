"""The engines imagegen's database runs on, and how many connections they pool.

PostgreSQL: one ``AsyncEngine`` (asyncpg) holding ``PoolSettings.size`` connections, and as many
again while a burst lasts; a new job's transaction or a read waits ``PoolSettings.timeout``
seconds at most for one, then the store answers ``StoreBusy`` (503), not a 30-second hang and a
500 (a running job's writes go first and wait: ``db/database.py``).

SQLite: synchronous engines (the ``sqlite3`` driver) only. The store's transactions run on
``sqlite_engine``s on threads of their own (``db/database.py``), and ``open_store`` migrates on
one too; an ``AsyncEngine`` (aiosqlite) is made only when asked for (``create_engine``,
``GenerationStore.engine``). SQLAlchemy's asyncio layer imports its ORM, a sizeable part of
start-up, so it is imported only by what uses it. SQLite files get WAL mode (set by the
migration), a busy timeout and enforced foreign keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

SQLITE_BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How many connections the store keeps, and how long a new job's transaction waits for one.

    ``size``: PostgreSQL connections kept open (as many again on demand). ``timeout``: seconds
    a new job's transaction or a read may wait for a connection, or on SQLite for its turn at
    the writer (a running job's writes wait as long as it takes).
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
        return create_async_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=pool.size,
            max_overflow=pool.size,
            pool_timeout=pool.timeout,
        )
    _ensure_sqlite_directory(parsed)
    engine = create_async_engine(parsed, pool_timeout=pool.timeout)
    sa.event.listen(engine.sync_engine, "connect", set_sqlite_pragmas)
    return engine


def sqlite_engine(url: URL, *, connections: int, timeout: float, begin: str) -> sa.Engine:
    """A synchronous engine (the ``sqlite3`` driver) on the SQLite file of ``url``.

    ``begin`` is the statement opening each transaction: ``BEGIN IMMEDIATE`` takes the write
    lock at once (so a transaction that reads before it writes cannot fail to upgrade), a plain
    ``BEGIN`` gives a read transaction one snapshot of the file.
    """
    engine = sa.create_engine(
        url.set(drivername="sqlite+pysqlite"),
        pool_size=connections,
        max_overflow=0,
        pool_timeout=timeout,
    )

    def connected(dbapi_connection: Any, record: Any) -> None:
        set_sqlite_pragmas(dbapi_connection, record)
        dbapi_connection.isolation_level = None  # the driver's own BEGINs off; ours below

    def began(connection: sa.Connection) -> None:
        connection.exec_driver_sql(begin)

    sa.event.listen(engine, "connect", connected)
    sa.event.listen(engine, "begin", began)
    return engine


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
