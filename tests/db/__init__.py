"""Tests of imagegen.db; the helpers here give each test a fresh SQLite file or PostgreSQL database.

The PostgreSQL tests run against the server at ``IMAGEGEN_TEST_POSTGRES_URL`` (default
127.0.0.1:5432, as in CI) when it answers, else against a private server started for the session
(tests/support/postgres.py); they never skip. The server's database only serves to create and drop
the per-test databases.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from tests.support.postgres import server_url

BACKENDS = ["sqlite", "postgresql"]


def __getattr__(name: str) -> str:
    """``POSTGRES_URL``: the test server's URL, decided (a private server started) on first use."""
    if name == "POSTGRES_URL":
        return server_url()
    raise AttributeError(name)


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """Create an empty database on the test server, yield its URL, then drop it."""
    server = make_url(server_url())
    name = f"imagegen_test_{uuid.uuid4().hex[:16]}"
    admin = create_async_engine(
        server, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"timeout": 10}
    )
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except (OSError, SQLAlchemyError) as exc:
        await admin.dispose()
        where = server.render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL at {where} is unreachable or refused CREATE DATABASE ({exc!r}). "
            "The database tests need it: start the server, or unset IMAGEGEN_TEST_POSTGRES_URL.",
            pytrace=False,
        )
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


@asynccontextmanager
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of a fresh, empty database on ``backend`` (a SQLite file in a missing directory)."""
    if backend == "postgresql":
        async with postgres_database() as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{(tmp_path / 'data' / 'imagegen.db').as_posix()}"


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class SequentialIds:
    """``gen_`` ids in creation order, the same length as the real ones."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> str:
        self.count += 1
        return f"gen_{self.count:026d}"


def locked(path: Path) -> sqlite3.Connection:
    """Another process's connection, holding the SQLite file's write lock until it rolls back."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other
