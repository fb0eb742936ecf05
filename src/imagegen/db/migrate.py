"""Bring a database up: Alembic migrations, run at start-up (engines: ``db/engine.py``).

SQLite files are put in WAL mode first. Migrations ship inside the package
(``imagegen.db:migrations``), so an installed wheel migrates without an ``alembic.ini``.
Replicas starting together are serialised: on PostgreSQL by a transaction-scoped advisory lock,
on SQLite by ``BEGIN IMMEDIATE`` (which also makes SQLite's DDL transactional, so a crash
mid-migration leaves nothing half-built).
"""

from __future__ import annotations

import asyncio
import itertools

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from imagegen.db.engine import SQLITE_BUSY_TIMEOUT_MS, create_engine

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "alembic_config", "create_engine", "migrate"]

SCRIPT_LOCATION = "imagegen.db:migrations"
_WAL_ATTEMPTS = 60  # about five seconds
# An arbitrary constant naming imagegen's migration lock among PostgreSQL advisory locks.
_PG_MIGRATION_LOCK = 0x696D6167656E


async def _use_wal(engine: AsyncEngine) -> None:
    """Put the SQLite file in WAL mode (it persists in the file), so readers run beside a writer.

    Converting returns SQLITE_BUSY *without* waiting out the busy timeout while another
    connection converts or locks the file (replicas starting together), so it is retried.
    """
    for attempt in itertools.count(1):
        try:
            async with engine.connect() as connection:
                await connection.exec_driver_sql("PRAGMA journal_mode = WAL")
            return
        except sa.exc.OperationalError:
            if attempt >= _WAL_ATTEMPTS:
                raise
            await asyncio.sleep(min(0.1, 0.01 * attempt))


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration, built in code; ``url`` is needed only for offline (--sql) use."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision``, in one locked transaction."""
    if engine.dialect.name == "sqlite":
        await _use_wal(engine)
    async with engine.begin() as connection:
        await _lock_for_migration(connection)
        await connection.run_sync(_run_upgrade, revision)


async def _lock_for_migration(connection: AsyncConnection) -> None:
    dialect = connection.dialect.name
    if dialect == "postgresql":
        await connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _PG_MIGRATION_LOCK}
        )
    elif dialect == "sqlite":
        # The driver begins transactions lazily (before the first DML); begin now, for writing.
        await connection.exec_driver_sql("BEGIN IMMEDIATE")


def _run_upgrade(connection: sa.Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
