"""The database's capacity errors, translated at the store's boundary into ``StoreBusy`` (503
with ``Retry-After``): an overloaded database is a reason to come back later, not a 500.

Recognised by type and by the database's own error codes, never by message text:

- ``sqlalchemy.exc.TimeoutError``: no pooled connection came free in time (or, on SQLite, the
  writer's queue was too long; ``db/database.py``);
- SQLite ``SQLITE_BUSY`` / ``SQLITE_LOCKED`` ("database is locked"): another connection, say
  another process's, held the lock past the busy timeout; ``sqlite3`` errors carry the code;
- PostgreSQL SQLSTATE class 53 (insufficient resources: ``too_many_connections``, out of
  memory or disk), ``57P03`` (``cannot_connect_now``: starting up or shutting down) and
  ``55P03`` (``lock_not_available``).

Faults of the database's own storage become ``DatabaseUnavailable`` (503 with ``Retry-After``
too: they pass when space returns or the database is made writable again):

- SQLite ``SQLITE_READONLY`` (a read-only file or folder, ``PRAGMA query_only``), ``SQLITE_FULL``,
  ``SQLITE_IOERR`` and ``SQLITE_CANTOPEN``;
- PostgreSQL ``25006`` (``read_only_sql_transaction``: a hot standby, or
  ``default_transaction_read_only``) and class 58 (system errors: I/O, missing files).

Anything else passes through unchanged: a missing table or a broken file is not a capacity
problem, and retrying it would not help.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from imagegen.errors import DatabaseUnavailable, ImagegenError, StoreBusy

_SQLITE_BUSY = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)
_PG_BUSY_CLASSES = frozenset({"53"})
_PG_BUSY_STATES = frozenset({"57P03", "55P03"})
_SQLITE_FAULTS = {8: "read-only", 10: "failing I/O", 13: "full", 14: "cannot be opened"}
_PG_READ_ONLY = "25006"
_PG_SYSTEM_CLASS = "58"


def database_error(exc: BaseException) -> ImagegenError | None:
    """What a driver error amounts to: ``StoreBusy`` (capacity), ``DatabaseUnavailable`` (its
    storage refuses writes), or None (anything else)."""
    busy = capacity_error(exc)
    if busy is not None or not isinstance(exc, sa.exc.DBAPIError):
        return busy
    driver_error = exc.orig
    sqlite_code = getattr(driver_error, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int) and (sqlite_code & 0xFF) in _SQLITE_FAULTS:
        state = _SQLITE_FAULTS[sqlite_code & 0xFF]
        return DatabaseUnavailable(f"imagegen's database is {state}; try again later")
    sqlstate = getattr(driver_error, "sqlstate", None)
    if sqlstate == _PG_READ_ONLY:
        return DatabaseUnavailable("imagegen's database is read-only; try again later")
    if isinstance(sqlstate, str) and sqlstate.startswith(_PG_SYSTEM_CLASS):
        return DatabaseUnavailable(
            f"imagegen's database failed its I/O (SQLSTATE {sqlstate}); try again later"
        )
    return None


def capacity_error(exc: BaseException) -> StoreBusy | None:
    """The ``StoreBusy`` that ``exc`` amounts to, or None when it is not a capacity error."""
    if isinstance(exc, sa.exc.TimeoutError):
        return StoreBusy(
            "imagegen's database is at capacity (no connection came free in time); try again later"
        )
    if not isinstance(exc, sa.exc.DBAPIError):
        return None
    driver_error = exc.orig
    sqlite_code = getattr(driver_error, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int) and (sqlite_code & 0xFF) in _SQLITE_BUSY:
        return StoreBusy("imagegen's database is locked by another writer; try again later")
    state = getattr(driver_error, "sqlstate", None)
    if isinstance(state, str) and (state[:2] in _PG_BUSY_CLASSES or state in _PG_BUSY_STATES):
        return StoreBusy(f"imagegen's database is at capacity (SQLSTATE {state}); try again later")
    return None


@contextmanager
def translated() -> Iterator[None]:
    """Raise ``StoreBusy`` or ``DatabaseUnavailable`` (chained) in place of the driver's error."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        translated_error = database_error(exc)
        if translated_error is None:
            raise
        raise translated_error from exc
