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
  stall. Writes the writer finds queued together commit together: one transaction, each write
  in a savepoint of its own (one that raises is undone alone), every caller told after the
  COMMIT (``SQLiteDatabase._write_group``). Reads run on threads and connections of their own
  beside it (WAL). A transaction costs one trip between the event loop and a thread; through
  aiosqlite, every statement cost three or four (cursor, execute, fetch, close), and the
  database was most of imagegen's CPU per generation.

  A write that finds the writer idle (nothing queued, no transaction running) runs at once on
  the event loop instead, on the writer's own connection (``SQLiteDatabase._write_inline``): a
  job's write takes tens of microseconds of SQLite's time, less than the trip to the thread
  and back, and its caller waits for nothing else. It never blocks the loop on a lock: the
  writer's connection has no busy timeout while the loop uses it, and when another process
  holds the file's write lock the write goes to the thread, which waits for it as before. Only
  in WAL mode, where readers never hold a commit back (a file the migration could not put in
  WAL mode has every write on the thread). The WAL is checkpointed on the thread too
  (``CHECKPOINT_EVERY``), never by a commit on the loop: a checkpoint writes the database file
  and syncs it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import URL

from imagegen.db import engine as engines
from imagegen.db.compiled import raise_driver_error
from imagegen.db.engine import PoolSettings, sqlite_driver, sqlite_engine
from imagegen.db.errors import database_error, translated
from imagegen.db.threads import ADMISSION, SETTLING, Outcome, Threads
from imagegen.db.turns import Turns

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[sa.Connection], T]

_BEGIN_WRITE = "BEGIN IMMEDIATE"  # the write lock at once: a read before a write cannot fail
_BEGIN_READ = "BEGIN"  # one snapshot of the file
# Commits on the writer's connection between two checkpoints of the WAL; a job's write changes a
# few pages, so this keeps the WAL near SQLite's own default of 1,000 pages.
CHECKPOINT_EVERY = 200
_CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
_SQLITE_BUSY = 5  # the primary result code of "database is locked" (sqlite3.h)


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
    ``url``. Each reader thread opens its own connection on first use and keeps it: nobody else
    uses it, so there is no pool checkout per transaction. The writer's one connection is used
    by whoever holds ``_writer_lock``: the writer thread, or the event loop for a write that
    found it idle (``inline_writes``; without it, every write goes to the thread)."""

    def __init__(self, url: URL, pool: PoolSettings, *, inline_writes: bool = True) -> None:
        self._timeout = pool.timeout
        readers = max(1, pool.sqlite_readers)
        self._inline = inline_writes
        self._writer_engine = sqlite_engine(
            url, connections=1, timeout=pool.timeout, checkpoints=not inline_writes
        )
        self._reader_engine = sqlite_engine(url, connections=readers, timeout=pool.timeout)
        self._writer_lock = threading.Lock()
        self._writer_connection: sa.Connection | None = None
        self._impatient: sqlite3.Connection | None = None  # the writer's, with no busy timeout
        self._commits = 0  # on the writer's connection since its last checkpoint
        self._checkpoint_asked = False
        self._queued = 0  # writes sent to the writer's thread and not answered yet
        self._writer = Threads("imagegen-db-writer", 1, group=self._locked_group)
        self._readers = Threads("imagegen-db-reader", readers)
        self._local = threading.local()
        self._opened: list[sa.Connection] = []

    @property
    def dialect(self) -> str:
        return "sqlite"

    async def write(
        self, work: Work[T], *, admission: bool = False, one_statement: bool = False
    ) -> T:
        # One statement or more, the writer's transaction costs no round trip. Errors are
        # translated as ``translated()`` does, without a generator's ``with`` per transaction.
        # Writes for admitted jobs go first and wait for their turn however long it takes.
        patience = self._timeout if admission else None
        try:
            if self._inline and not self._queued:
                done, result = self._write_inline(work)
                if done:
                    return cast(T, result)
            self._queued += 1
            try:
                return await self._writer.run(
                    _Write(self, work, time.monotonic(), patience),
                    priority=ADMISSION if admission else SETTLING,
                )
            finally:
                self._queued -= 1
        except sa.exc.SQLAlchemyError as exc:
            error = database_error(exc)
            if error is None:
                raise
            raise error from exc

    def _write_inline(self, work: Work[T]) -> tuple[bool, T | None]:
        """``work`` in a write transaction on the event loop, if the writer is idle: (True, its
        result). (False, None) when it did not run: a write is queued or running on the
        writer's thread, another process holds the file's write lock (the thread waits for it),
        or the file is not in WAL mode. Errors are raised as ``_transaction`` raises them."""
        if not self._writer.idle() or not self._writer_lock.acquire(blocking=False):
            return False, None
        try:
            connection = self._writer_conn()
            driver = sqlite_driver(connection)
            if self._impatient is not driver:
                if not _in_wal(connection):  # a commit would wait for readers: not on the loop
                    self._inline = False
                    return False, None
                _pragma(connection, "PRAGMA busy_timeout = 0")
                self._impatient = driver
            try:
                driver.execute(_BEGIN_WRITE)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF == _SQLITE_BUSY:
                    return False, None
                raise_driver_error(connection, exc, _BEGIN_WRITE, ())
            except sqlite3.Error as exc:
                raise_driver_error(connection, exc, _BEGIN_WRITE, ())
            result = self._run_and_commit(connection, work)
            self._commits += 1
            if self._commits >= CHECKPOINT_EVERY and not self._checkpoint_asked:
                self._checkpoint_asked = True
                self._writer.post(_nothing)  # the writer checkpoints after it
            return True, result
        finally:
            self._writer_lock.release()

    def _locked_group(
        self, calls: list[tuple[Callable[[], Any], asyncio.Future[Any]]]
    ) -> list[Outcome]:
        """``_write_group`` on the writer's thread, holding the writer's connection, with a
        checkpoint of the WAL after it when one is due."""
        with self._writer_lock:
            outcomes = self._write_group(calls)
            if self._commits >= CHECKPOINT_EVERY or self._checkpoint_asked:
                self._checkpoint()
        return outcomes

    def _checkpoint(self) -> None:
        """Copy the WAL's pages into the database file, as far as readers allow (PASSIVE: it
        waits for nobody). Only when writes run on the event loop: otherwise SQLite does it
        itself, in the commit that passes its threshold."""
        self._commits = 0
        self._checkpoint_asked = False
        if not self._inline:
            return
        try:
            connection = self._writer_conn()
            self._patient(connection)
            sqlite_driver(connection).execute(_CHECKPOINT).fetchall()
        except Exception as exc:  # the next one tries again; the WAL only grows meanwhile
            log.warning("could not checkpoint the SQLite WAL: %r", exc)

    def _patient(self, connection: sa.Connection) -> None:
        """Give the writer's connection its busy timeout back, on the writer's thread."""
        driver = sqlite_driver(connection)
        if self._impatient is driver:
            self._impatient = None
            _pragma(connection, f"PRAGMA busy_timeout = {engines.SQLITE_BUSY_TIMEOUT_MS}")

    async def read(self, work: Work[T]) -> T:
        try:
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
        except sa.exc.SQLAlchemyError as exc:
            error = database_error(exc)
            if error is None:
                raise
            raise error from exc

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
        _check_patience(queued_at, patience)
        if engine is self._writer_engine:
            connection = self._writer_conn()
            self._patient(connection)
        else:
            connection = self._connection(engine)
        driver = sqlite_driver(connection)
        try:
            driver.execute(begin)
        except sqlite3.Error as exc:
            raise_driver_error(connection, exc, begin, ())
        return self._run_and_commit(connection, work)

    def _run_and_commit(self, connection: sa.Connection, work: Work[T]) -> T:
        """``work`` in the transaction just begun on ``connection``, then its COMMIT; rolled
        back if either raises."""
        try:
            result = work(connection)
        except BaseException:
            _roll_back(connection)
            raise
        if connection.in_transaction():
            connection.commit()
        else:
            try:
                sqlite_driver(connection).commit()
            except sqlite3.Error as exc:
                _roll_back(connection)
                raise_driver_error(connection, exc, "COMMIT", ())
        return result

    def _write_group(
        self, calls: list[tuple[Callable[[], Any], asyncio.Future[Any]]]
    ) -> list[Outcome]:
        """The writes queued together (``_Write``s), as one transaction: one BEGIN and one
        COMMIT for them all, each in a savepoint of its own, so one that raises is undone alone
        and the others still commit. No write's caller hears of it before the COMMIT.

        Under load the writer finds several writes waiting; committed together they cost one
        BEGIN, one COMMIT and one append to the WAL, in which the pages they share (the job's
        table and index pages) are written once. A lone write runs as ``_transaction`` does.
        A write that used ``Connection.execute`` (SQLAlchemy's own transaction) is committed
        with the ones before it at once, as SQLAlchemy ends its transaction with the driver's;
        the rest go on in a new transaction."""
        if len(calls) == 1:
            return [_outcome(calls[0][0])]
        outcomes: list[Outcome] = []
        ran: list[int] = []  # the writes that returned, to commit: their places in outcomes
        connection: sa.Connection | None = None
        for write, future in calls:
            if future.cancelled():  # its caller is gone: it never runs
                outcomes.append((None, None))
                continue
            if not isinstance(write, _Write):  # another call for the writer thread: alone
                if connection is not None:
                    self._commit_group(connection, ran, outcomes)
                    connection = None
                outcomes.append(_outcome(write))
                continue
            try:
                _check_patience(write.queued_at, write.patience)
                if connection is None:
                    connection = self._begin_group()
                result = self._in_savepoint(connection, write.work)
            except _GroupLost as lost:  # the transaction is gone, and the writes it held
                outcomes.append((None, lost.error))
                for index in ran:
                    outcomes[index] = (None, lost.error)
                ran.clear()
                connection = None
                continue
            except BaseException as exc:  # this write's own failure, undone alone
                outcomes.append((None, exc))
            else:
                ran.append(len(outcomes))
                outcomes.append((result, None))
            if connection is not None and connection.in_transaction():
                self._commit_group(connection, ran, outcomes)  # SQLAlchemy's: end it now
                connection = None
        if connection is not None:
            self._commit_group(connection, ran, outcomes)
        return outcomes

    def _begin_group(self) -> sa.Connection:
        connection = self._writer_conn()
        try:
            self._patient(connection)
        except Exception as exc:
            _roll_back(connection)
            raise _GroupLost(exc) from exc
        _savepoint(connection, _BEGIN_WRITE)
        return connection

    def _in_savepoint(self, connection: sa.Connection, work: Work[T]) -> T:
        """``work`` inside a savepoint of the group's transaction: released when it returns,
        rolled back to when it raises (``_GroupLost`` when even that fails)."""
        driver = sqlite_driver(connection)
        _savepoint(connection, _SAVEPOINT)
        try:
            result = work(connection)
        except BaseException as exc:
            try:
                if connection.invalidated:
                    raise exc
                driver.execute(_ROLLBACK_TO_SAVEPOINT)
                driver.execute(_RELEASE_SAVEPOINT)
            except BaseException as undo:
                _roll_back(connection)
                raise _GroupLost(exc) from undo
            raise
        _savepoint(connection, _RELEASE_SAVEPOINT)
        return result

    def _commit_group(
        self, connection: sa.Connection, ran: list[int], outcomes: list[Outcome]
    ) -> None:
        """Commit the group's transaction; if it fails, the writes it held fail with it."""
        try:
            if connection.in_transaction():
                connection.commit()
            else:
                driver = sqlite_driver(connection)
                try:
                    driver.commit()
                except sqlite3.Error as exc:
                    _roll_back(connection)
                    raise_driver_error(connection, exc, "COMMIT", ())
            self._commits += 1
        except Exception as exc:
            _roll_back(connection)  # if the failure left it open
            for index in ran:
                outcomes[index] = (None, exc)
        ran.clear()

    def _writer_conn(self) -> sa.Connection:
        """The writer's connection (one that failed reconnects on its next use); only for
        whoever holds ``_writer_lock``."""
        connection = self._writer_connection
        if connection is None or connection.closed:
            connection = self._writer_connection = self._writer_engine.connect()
            self._opened.append(connection)
        return connection

    def _connection(self, engine: sa.Engine) -> sa.Connection:
        """This thread's connection to ``engine`` (one that failed reconnects on its next use)."""
        mine: dict[sa.Engine, sa.Connection] = self._local.__dict__.setdefault("connections", {})
        connection = mine.get(engine)
        if connection is None or connection.closed:
            connection = mine[engine] = engine.connect()
            self._opened.append(connection)
        return connection

    async def aclose(self) -> None:
        self._inline = False  # from now on only the writer's thread, until it stops
        await self._writer.aclose()
        await self._readers.aclose()
        for connection in self._opened:  # their threads have stopped
            connection.close()
        self._writer_engine.dispose()
        self._reader_engine.dispose()


_SAVEPOINT = "SAVEPOINT imagegen_write"
_ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT imagegen_write"
_RELEASE_SAVEPOINT = "RELEASE SAVEPOINT imagegen_write"


class _Write:
    """A write waiting for the writer thread: run alone, ``work`` in a transaction of its own."""

    __slots__ = ("_db", "patience", "queued_at", "work")

    def __init__(
        self, db: SQLiteDatabase, work: Work[Any], queued_at: float, patience: float | None
    ) -> None:
        self._db = db
        self.work = work
        self.queued_at = queued_at
        self.patience = patience

    def __call__(self) -> Any:
        db = self._db
        result = db._transaction(
            db._writer_engine, _BEGIN_WRITE, self.work, self.queued_at, self.patience
        )
        db._commits += 1
        return result


class _GroupLost(Exception):
    """A group's transaction could not begin or was lost: ``error`` is every write's in it."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _savepoint(connection: sa.Connection, sql: str) -> None:
    """Run ``sql`` (a group's BEGIN, a savepoint's start or release); if it fails, the group's
    transaction is rolled back and lost, with the writes it held."""
    try:
        sqlite_driver(connection).execute(sql)
    except sqlite3.Error as exc:
        try:
            raise_driver_error(connection, exc, sql, ())
        except Exception as error:
            _roll_back(connection)
            raise _GroupLost(error) from error


def _pragma(connection: sa.Connection, sql: str) -> None:
    try:
        sqlite_driver(connection).execute(sql)
    except sqlite3.Error as exc:
        raise_driver_error(connection, exc, sql, ())


def _in_wal(connection: sa.Connection) -> bool:
    """Whether the file is in WAL mode, where readers never hold a writer back (the migration
    puts it there; a file system without shared memory can refuse)."""
    try:
        row = sqlite_driver(connection).execute("PRAGMA journal_mode").fetchone()
    except sqlite3.Error as exc:
        raise_driver_error(connection, exc, "PRAGMA journal_mode", ())
    return row is not None and str(row[0]).lower() == "wal"


def _nothing() -> None:
    """A call that wakes the writer's thread (for the checkpoint it runs after each group)."""


def _outcome(call: Callable[[], Any]) -> Outcome:
    try:
        return (call(), None)
    except BaseException as exc:  # handed to the caller, whatever it is
        return (None, exc)


def _check_patience(queued_at: float, patience: float | None) -> None:
    waited = time.monotonic() - queued_at
    if patience is not None and waited > patience:
        # As a pool refuses a checkout: the queue is the pool here. Nothing ran.
        raise sa.exc.TimeoutError(
            f"waited {waited:.1f} s for a database thread (limit {patience:g} s)"
        )
