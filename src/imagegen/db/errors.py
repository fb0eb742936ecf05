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

Anything else passes through unchanged: a missing table or a broken file is not a capacity
problem, and retrying it would not help.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from imagegen.errors import StoreBusy

_SQLITE_BUSY = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (primary codes)
_PG_BUSY_CLASSES = frozenset({"53"})
_PG_BUSY_STATES = frozenset({"57P03", "55P03"})


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
    """Raise ``StoreBusy`` (chained) in place of a database capacity error."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        busy = capacity_error(exc)
        if busy is None:
            raise
        raise busy from exc
