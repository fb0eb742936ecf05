"""Bring a database up: Alembic migrations, run at start-up (engines: ``db/engine.py``).

SQLite files are put in WAL mode first. Migrations ship inside the package
(``imagegen.db:migrations``), so an installed wheel migrates without an ``alembic.ini``.
Replicas starting together are serialised: on PostgreSQL by a transaction-scoped advisory lock,
on SQLite by ``BEGIN IMMEDIATE`` (which also makes SQLite's DDL transactional, so a crash
mid-migration leaves nothing half-built). ``open_store`` migrates SQLite on a synchronous engine
(``migrate_sqlite``), as its transactions run; ``migrate`` takes any ``AsyncEngine``.

A database already at the head revision is the usual start: that is read from its
``alembic_version`` table and the revision ids in the migration files, and Alembic itself (and
what it imports: Mako, Pygments, every dialect's DDL) is not loaded at all. Anything unclear
(a file whose ids cannot be read, a branch, an older database) goes through Alembic.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import URL

from imagegen.db.engine import SQLITE_BUSY_TIMEOUT_MS, create_engine, sqlite_migration_engine

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "alembic_config",
    "create_engine",
    "migrate",
    "migrate_sqlite",
]

SCRIPT_LOCATION = "imagegen.db:migrations"
VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION = re.compile(r"^revision(?:\s*:\s*[\w.| \[\]]+)?\s*=\s*[\"']([^\"']+)[\"']\s*$", re.M)
_DOWN = re.compile(r"^down_revision(?:\s*:\s*[\w.| \[\],]+)?\s*=\s*(.+?)\s*$", re.M)
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


def _use_wal_blocking(engine: sa.Engine) -> None:
    """``_use_wal`` on a synchronous engine."""
    for attempt in itertools.count(1):
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode = WAL")
            return
        except sa.exc.OperationalError:
            if attempt >= _WAL_ATTEMPTS:
                raise
            time.sleep(min(0.1, 0.01 * attempt))


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration, built in code; ``url`` is needed only for offline (--sql) use."""
    from alembic.config import Config

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
        if revision == "head" and await connection.run_sync(_at_head):
            return
        await connection.run_sync(_run_upgrade, revision)


async def migrate_sqlite(url: str | URL, revision: str = "head") -> None:
    """``migrate`` for the SQLite file of ``url``, on a synchronous engine in a thread: what
    the store runs on, so start-up loads no asyncio engine (nor the ORM it imports)."""
    await asyncio.to_thread(_migrate_sqlite_blocking, url, revision)


def _migrate_sqlite_blocking(url: str | URL, revision: str) -> None:
    engine = sqlite_migration_engine(url)
    try:
        _use_wal_blocking(engine)
        with engine.begin() as connection:
            # As ``_lock_for_migration``: begin now, for writing (the driver would begin late).
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            if revision == "head" and _at_head(connection):
                return
            _run_upgrade(connection, revision)
    finally:
        engine.dispose()


@functools.cache
def script_heads() -> frozenset[str] | None:
    """The head revision ids of the migration files, read from their text; None when a file's
    ids cannot be read plainly (then Alembic decides)."""
    revisions: set[str] = set()
    downs: set[str] = set()
    for path in sorted(VERSIONS.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION.findall(text), _DOWN.findall(text)
        if len(revision) != 1 or len(down) != 1:
            return None
        revisions.add(revision[0])
        value = down[0]
        if value != "None":
            named = re.fullmatch(r"[\"']([^\"']+)[\"']", value)
            if named is None:  # a tuple (a merge) or anything else: Alembic reads it
                return None
            downs.add(named[1])
    heads = revisions - downs
    return frozenset(heads) if heads and downs <= revisions else None


def _at_head(connection: sa.Connection) -> bool:
    """True when the database's ``alembic_version`` names exactly the files' heads."""
    heads = script_heads()
    if heads is None or not sa.inspect(connection).has_table("alembic_version"):
        return False
    rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    return frozenset(rows) == heads


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
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
