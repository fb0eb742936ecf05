"""The statements every job runs, compiled by SQLAlchemy once per dialect and run on the driver's
cursor: ``Fixed``.

SQLAlchemy builds every statement from ``tables.py`` and compiles it, with the bind and result
processing of each column's type (JSON documents, UTC timestamps) for the dialect in use; what
``Connection.execute`` adds to each call (a compiled-cache lookup, an execution context, the
parameters rebuilt as dictionaries, a ``Result`` around the cursor) cost more CPU than SQLite's
own work on the job's writes. A ``Fixed`` statement keeps, per dialect and set of parameter
names, the compiled SQL and the processors of its parameters in their positional order, and of
its result columns; each call only converts the values, runs the cursor and reads its rows.

It keeps what callers rely on from ``Connection.execute``: the transaction is the connection's
own (the statement runs on its DBAPI connection, inside whatever ``Connection.begin`` or the
autocommit mode opened), the driver's errors come out as SQLAlchemy's (``IntegrityError``...,
with ``orig``), a connection the driver reports lost is invalidated, and listeners of the
``before_cursor_execute`` and ``after_cursor_execute`` events hear each statement.

Statements whose SQL depends on their values (an expanding ``IN``, literal-rendered
parameters) or that need Python-side column defaults are refused: those run through
``Connection.execute``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

Processor = Callable[[Any], Any]
Row = dict[str, Any]

# A positional parameter: the key of the value to bind (None: ``constant``) and its processor.
_Bind = tuple[str | None, Any, Processor | None]


@dataclass(frozen=True, slots=True)
class Ran:
    """What a statement returned: its rows (statements that return rows), and the rows it
    changed (DML)."""

    rows: list[Row]
    rowcount: int


_NOTHING = Ran([], -1)  # what ``executemany`` returns: no rows, the count unused


class Fixed:
    """``statement``, compiled for each dialect and each set of parameter names it is run with,
    and run on the connection's DBAPI cursor."""

    def __init__(self, statement: ClauseElement) -> None:
        self._statement = statement
        self._compiled: dict[tuple[sa.Dialect, frozenset[str]], _Compiled] = {}
        self._lock = threading.Lock()

    @property
    def statement(self) -> ClauseElement:
        return self._statement

    def execute(
        self, connection: sa.Connection, parameters: Mapping[str, Any] | None = None
    ) -> Ran:
        """Run the statement once with ``parameters``."""
        values = parameters or {}
        return self._for(connection.dialect, values).execute(connection, values)

    def rows(
        self, connection: sa.Connection, parameters: Mapping[str, Any] | None = None
    ) -> list[Row]:
        return self.execute(connection, parameters).rows

    def first(
        self, connection: sa.Connection, parameters: Mapping[str, Any] | None = None
    ) -> Row | None:
        rows = self.execute(connection, parameters).rows
        return rows[0] if rows else None

    def rowcount(
        self, connection: sa.Connection, parameters: Mapping[str, Any] | None = None
    ) -> int:
        return self.execute(connection, parameters).rowcount

    def executemany(
        self, connection: sa.Connection, parameters: Sequence[Mapping[str, Any]]
    ) -> None:
        """Run the statement once per mapping (all with the same names); it returns no rows."""
        if not parameters:
            return
        if len(parameters) == 1:
            self.execute(connection, parameters[0])
            return
        self._for(connection.dialect, parameters[0]).executemany(connection, parameters)

    def _for(self, dialect: sa.Dialect, parameters: Mapping[str, Any]) -> _Compiled:
        key = (dialect, frozenset(parameters))
        compiled = self._compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(key)
                if compiled is None:
                    compiled = self._compiled[key] = _Compiled(self._statement, dialect, key[1])
        return compiled


class _Compiled:
    """``statement`` compiled for ``dialect`` with parameters named ``keys``."""

    def __init__(self, statement: ClauseElement, dialect: sa.Dialect, keys: frozenset[str]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"not a SQL statement: {statement!r}")
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("a Fixed statement renders the same SQL whatever its values")
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("a Fixed statement has no Python-side column defaults")
        if not compiled.positional or compiled.positiontup is None:
            raise ValueError(f"{dialect.name}: a Fixed statement needs a positional paramstyle")
        if compiled.escaped_bind_names:
            raise ValueError("a Fixed statement's parameters need no escaping")
        self.sql: str = compiled.string
        self.dialect = dialect
        self._sequence: Callable[[list[Any]], Sequence[Any]] = dialect.execute_sequence_format
        self._binds: tuple[_Bind, ...] = tuple(
            _bind(compiled.binds[name], dialect, keys) for name in compiled.positiontup
        )
        # An INSERT's RETURNING may be the compiler's own (PostgreSQL fetches the new primary key).
        returned = compiled.effective_returning
        columns = returned if returned is not None else getattr(statement, "exported_columns", ())
        self._columns: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = tuple(
            (str(column.key), column.type) for column in columns
        )
        self._readers: tuple[tuple[str, Processor | None], ...] | None = None

    def positional(self, parameters: Mapping[str, Any]) -> Sequence[Any]:
        values: list[Any] = []
        for key, constant, processor in self._binds:
            value = constant if key is None else parameters[key]
            values.append(value if processor is None or value is None else processor(value))
        return self._sequence(values)

    def execute(self, connection: sa.Connection, parameters: Mapping[str, Any]) -> Ran:
        return self._run(connection, self.positional(parameters), executemany=False)

    def executemany(
        self, connection: sa.Connection, parameters: Sequence[Mapping[str, Any]]
    ) -> None:
        self._run(connection, [self.positional(each) for each in parameters], executemany=True)

    def _run(self, connection: sa.Connection, values: Any, *, executemany: bool) -> Ran:
        """Run this statement with ``values`` on a cursor of ``connection``'s driver: listeners
        hear it before and after, a driver's error comes out as SQLAlchemy's, an interruption
        invalidates the connection, and the cursor is closed. (Inline rather than a context
        manager: a generator's ``with`` cost more than the rest of this method.)"""
        sql = self.sql
        cursor = _dbapi_connection(connection).cursor()
        listened = _listened(connection)
        try:
            if listened:
                _before(connection, cursor, sql, values, executemany=executemany)
            try:
                if executemany:
                    cursor.executemany(sql, values)
                    ran = _NOTHING
                else:
                    cursor.execute(sql, values)
                    description = cursor.description
                    rows = [] if description is None else self._read(description, cursor.fetchall())
                    ran = Ran(rows, cursor.rowcount)
            except Exception as exc:
                raise_driver_error(connection, exc, sql, values, cursor)
            except BaseException:
                _interrupted(connection)
                raise
            if listened:
                _after(connection, cursor, sql, values, executemany=executemany)
            return ran
        finally:
            _close(connection, cursor)

    def _read(self, description: Sequence[Sequence[Any]], fetched: Sequence[Any]) -> list[Row]:
        readers = self._readers
        if readers is None:
            readers = self._readers = self._make_readers(description)
        return [
            {
                name: value if reader is None or value is None else reader(value)
                for (name, reader), value in zip(readers, row, strict=True)
            }
            for row in fetched
        ]

    def _make_readers(
        self, description: Sequence[Sequence[Any]]
    ) -> tuple[tuple[str, Processor | None], ...]:
        """Each result column's name and result processor, for the driver's column types."""
        if len(description) != len(self._columns):
            raise ValueError(
                f"the statement returns {len(description)} columns, not {len(self._columns)}"
            )
        return tuple(
            (name, type_.dialect_impl(self.dialect).result_processor(self.dialect, entry[1]))
            for (name, type_), entry in zip(self._columns, description, strict=True)
        )


def _bind(bind: sa.BindParameter[Any], dialect: sa.Dialect, keys: frozenset[str]) -> _Bind:
    processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
    if bind.key in keys:
        return bind.key, None, processor
    if bind.required:
        raise ValueError(f"a Fixed statement's parameter {bind.key!r} has no value")
    value = bind.effective_value
    return None, value if processor is None or value is None else processor(value), None


def _dbapi_connection(connection: sa.Connection) -> Any:
    """The driver's connection under ``connection`` (connecting again after an invalidation,
    as ``Connection.execute`` does)."""
    return connection.connection.dbapi_connection


def _listened(connection: sa.Connection) -> bool:
    """Whether any event listener is on ``connection`` or its engine: the flags
    ``Connection.execute`` itself checks, much cheaper than asking the dispatcher."""
    return connection._has_events or connection.engine._has_events


def _before(
    connection: sa.Connection, cursor: Any, sql: str, values: Any, *, executemany: bool
) -> None:
    for listener in connection.dispatch.before_cursor_execute:
        listener(connection, cursor, sql, values, None, executemany)


def _after(
    connection: sa.Connection, cursor: Any, sql: str, values: Any, *, executemany: bool
) -> None:
    for listener in connection.dispatch.after_cursor_execute:
        listener(connection, cursor, sql, values, None, executemany)


def _close(connection: sa.Connection, cursor: Any) -> None:
    """Close ``cursor``; one of a connection invalidated under it may fail to, harmlessly."""
    if connection.invalidated:
        with contextlib.suppress(Exception):
            cursor.close()
    else:
        cursor.close()


def _interrupted(connection: sa.Connection) -> None:
    """A statement cut off mid-way (its task cancelled: a deadline, a turn's timeout, the
    client gone) leaves the driver's connection in a state nobody knows: a PostgreSQL
    transaction aborted, a reply half read. As ``Connection.execute`` does, the connection is
    invalidated, so the pool never hands it out again."""
    with contextlib.suppress(Exception):
        connection.invalidate()


def raise_driver_error(
    connection: sa.Connection, error: Exception, sql: str, values: Any, cursor: Any = None
) -> NoReturn:
    """Raise ``error`` as SQLAlchemy does: a driver's error wrapped in its ``DBAPIError``
    (``IntegrityError``...); a connection the driver says is lost is invalidated, so that its
    next use connects again."""
    dialect = connection.dialect
    dbapi_error = dialect.loaded_dbapi.Error
    if not isinstance(error, dbapi_error):
        raise error
    lost = bool(dialect.is_disconnect(error, _dbapi_connection(connection), cursor))
    if lost:
        connection.invalidate(error)
    raise sa.exc.DBAPIError.instance(
        sql, values, error, dbapi_error, connection_invalidated=lost, dialect=dialect
    ) from error
