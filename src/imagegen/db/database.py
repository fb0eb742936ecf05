"""Where the store's transactions run. A transaction is a plain function of a synchronous
SQLAlchemy ``Connection`` (``Work``), run whole by ``Database.write`` or ``Database.read``;
capacity errors come out as ``StoreBusy`` (``db/errors.py``).

- PostgreSQL: on the event loop, through SQLAlchemy's asyncio layer (``run_sync``) over asyncpg,
  each after taking a turn at the pool (``db/turns.py``), with the same priorities as SQLite's.
  Each round trip costs CPU here, so what needs no transaction runs without one (autocommit):
  reads (PostgreSQL's READ COMMITTED gives each statement its own snapshot, in a transaction or
  not) and writes of one statement (``one_statement``: atomic on their own), saving the BEGIN
  and the COMMIT or ROLLBACK around them.
- SQLite: on threads, over the ``sqlite3`` driver. SQLite lets one writer in at a time, so one
  writer thread with one connection runs every write transaction: writers wait in its queue
  instead of sleeping in SQLite's busy handler, and "database is locked" can only come from
  another process. Writes for jobs already admitted go first, in arrival order, and wait as long
  as it takes; a write that admits a new job (``admission``) waits until they have gone, and
  ``PoolSettings.timeout`` at most, so under overload new jobs are refused before running ones
  stall. Reads run on threads and connections of their own beside it (WAL). A transaction
  costs one trip between the event loop and a thread; through aiosqlite, every statement cost
  three or four (cursor, execute, fetch, close), and the database was most of imagegen's CPU
  per generation.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL

from imagegen.db.compiled import raise_driver_error
from imagegen.db.engine import PoolSettings, sqlite_driver, sqlite_engine
from imagegen.db.errors import translated
from imagegen.db.threads import ADMISSION, SETTLING, Threads
from imagegen.db.turns import Turns

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[sa.Connection], T]

_BEGIN_WRITE = "BEGIN IMMEDIATE"  # the write lock at once: a read before a write cannot fail
_BEGIN_READ = "BEGIN"  # one snapshot of the file


class Database(Protocol):
    """Runs ``Work`` in a transaction: committed if it returns, rolled back if it raises."""

    @property
    def dialect(self) -> str:
        """The SQLAlchemy dialect's name: ``sqlite`` or ``postgresql``."""
        ...

    async def write(
        self, work: Work[T], *, admission: bool = False, one_statement: bool = False
    ) -> T:
        """``admission``: ``work`` admits a new job (or is a request's own write, no running
        job's): it waits behind the other writes, ``PoolSettings.timeout`` at most. The others
        (a running job's, the background work's) go first and wait as long as it takes.
        ``one_statement``: ``work`` writes with one statement only, atomic by itself (anything
        else it runs only reads)."""
        ...

    async def read(self, work: Work[T]) -> T:
        """``work`` must not write; on SQLite it sees one snapshot of the file."""
        ...

    async def aclose(self) -> None:
        """Finish what was submitted, then close every connection."""
        ...


def open_database(engine: AsyncEngine | URL, pool: PoolSettings) -> Database:
    """On SQLite (an engine on it, or its URL), threads over the file; else ``engine``'s pool."""
    if isinstance(engine, URL):
        return SQLiteDatabase(engine, pool)
    if engine.dialect.name == "sqlite":
        return SQLiteDatabase(engine.url, pool)
    return AsyncDatabase(engine, pool)


class AsyncDatabase:
    """Transactions on the event loop, over ``engine``'s pool (the caller disposes of it).

    Each takes a turn first (``db/turns.py``): as many turns as the pool holds connections,
    writes for jobs already admitted first, then new jobs and reads in arrival order, which give
    up after ``pool.timeout``. A write for an admitted job never gives up for want of a
    connection: when the pool has none in time (something outside the turns holds them), it
    asks again. Reads and one-statement writes run in autocommit mode, on the same pool.
    """

    def __init__(self, engine: AsyncEngine, pool: PoolSettings) -> None:
        self._engine = engine
        self._turns = Turns(pool_capacity(engine.sync_engine.pool), pool.timeout)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    async def write(
        self, work: Work[T], *, admission: bool = False, one_statement: bool = False
    ) -> T:
        engine = self._autocommit if one_statement else self._engine
        with translated():
            async with self._turns.turn(ADMISSION if admission else SETTLING):
                connection = await self._connect(engine, patient=not admission)
                try:
                    if one_statement:
                        return await connection.run_sync(work)
                    async with connection.begin():
                        return await connection.run_sync(work)
                finally:
                    await connection.close()

    async def _connect(self, engine: AsyncEngine, *, patient: bool) -> AsyncConnection:
        """A connection from the pool; ``patient``: however long it takes."""
        while True:
            try:
                return await engine.connect()
            except sa.exc.TimeoutError:
                if not patient:
                    raise
                log.info("no database connection came free in time; asking the pool again")

    async def read(self, work: Work[T]) -> T:
        with translated():
            async with self._turns.turn(ADMISSION), self._autocommit.connect() as connection:
                return await connection.run_sync(work)

    async def aclose(self) -> None:
        return None


def _roll_back(connection: sa.Connection) -> None:
    """End a transaction that failed; a connection that cannot even roll back is dropped (the
    next transaction connects again), and the failure that got here is the one raised."""
    try:
        if connection.in_transaction():
            connection.rollback()
        elif not connection.invalidated:
            driver = sqlite_driver(connection)
            if driver.in_transaction:
                driver.rollback()
    except Exception as exc:
        log.warning("a SQLite connection could not roll back and is replaced: %r", exc)
        connection.invalidate(exc)


def pool_capacity(pool: sa.Pool) -> int:
    """How many turns ``pool`` gets: the connections it keeps (``create_engine`` opens no
    overflow beyond them; a pool that did would only wait less). A pool without a bound
    (``NullPool``) gets one turn per transaction anyone would ask for."""
    return pool.size() if isinstance(pool, sa.QueuePool) else 1 << 30


class SQLiteDatabase:
    """One writer thread and ``pool.sqlite_readers`` reader threads on the SQLite file of
    ``url``. Each thread opens its own connection on first use and keeps it: nobody else uses
    it, so there is no pool checkout per transaction."""

    def __init__(self, url: URL, pool: PoolSettings) -> None:
        self._timeout = pool.timeout
        readers = max(1, pool.sqlite_readers)
        self._writer_engine = sqlite_engine(url, connections=1, timeout=pool.timeout)
        self._reader_engine = sqlite_engine(url, connections=readers, timeout=pool.timeout)
        self._writer = Threads("imagegen-db-writer", 1)
        self._readers = Threads("imagegen-db-reader", readers)
        self._local = threading.local()
        self._opened: list[sa.Connection] = []

    @property
    def dialect(self) -> str:
        return "sqlite"

    async def write(
        self, work: Work[T], *, admission: bool = False, one_statement: bool = False
    ) -> T:
        with translated():  # one statement or more, the writer's transaction costs no round trip
            # Writes for admitted jobs go first and wait for their turn however long it takes.
            patience = self._timeout if admission else None
            return await self._writer.run(
                partial(
                    self._transaction,
                    self._writer_engine,
                    _BEGIN_WRITE,
                    work,
                    time.monotonic(),
                    patience,
                ),
                priority=ADMISSION if admission else SETTLING,
            )

    async def read(self, work: Work[T]) -> T:
        with translated():
            return await self._readers.run(
                partial(
                    self._transaction,
                    self._reader_engine,
                    _BEGIN_READ,
                    work,
                    time.monotonic(),
                    self._timeout,
                )
            )

    def _transaction(
        self,
        engine: sa.Engine,
        begin: str,
        work: Work[T],
        queued_at: float,
        patience: float | None,
    ) -> T:
        """``work`` in a transaction opened with ``begin``, committed if it returns.

        BEGIN, COMMIT and ROLLBACK go straight to the driver's connection: through
        SQLAlchemy's ``Connection.begin`` (a transaction object, the ``begin`` event, a
        statement executed with its machinery) they cost more CPU than the job's statements.
        A statement of ``work`` run through ``Connection.execute`` makes SQLAlchemy begin its
        own transaction on the connection (it issues no BEGIN: ``sqlite_engine``); it ends it.
        """
        waited = time.monotonic() - queued_at
        if patience is not None and waited > patience:
            # As a pool refuses a checkout: the queue is the pool here. Nothing ran.
            raise sa.exc.TimeoutError(
                f"waited {waited:.1f} s for a database thread (limit {patience:g} s)"
            )
        connection = self._connection(engine)
        driver = sqlite_driver(connection)
        try:
            driver.execute(begin)
        except sqlite3.Error as exc:
            raise_driver_error(connection, exc, begin, ())
        try:
            result = work(connection)
        except BaseException:
            _roll_back(connection)
            raise
        if connection.in_transaction():
            connection.commit()
        else:
            try:
                driver.commit()
            except sqlite3.Error as exc:
                _roll_back(connection)
                raise_driver_error(connection, exc, "COMMIT", ())
        return result

    def _connection(self, engine: sa.Engine) -> sa.Connection:
        """This thread's connection to ``engine`` (one that failed reconnects on its next use)."""
        mine: dict[sa.Engine, sa.Connection] = self._local.__dict__.setdefault("connections", {})
        connection = mine.get(engine)
        if connection is None or connection.closed:
            connection = mine[engine] = engine.connect()
            self._opened.append(connection)
        return connection

    async def aclose(self) -> None:
        await self._writer.aclose()
        await self._readers.aclose()
        for connection in self._opened:  # their threads have stopped
            connection.close()
        self._writer_engine.dispose()
        self._reader_engine.dispose()
