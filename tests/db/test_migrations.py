"""Migrations: they build exactly the tables in imagegen.db.tables, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

import imagegen.db
from imagegen.db import create_engine, migrate, open_store
from imagegen.db.migrate import SQLITE_BUSY_TIMEOUT_MS, alembic_config
from imagegen.db.tables import Base

from . import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_url(request.param, tmp_path) as value:
        yield value


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(url)
    yield created
    await created.dispose()


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _diff(engine: AsyncEngine, metadata: sa.MetaData = Base.metadata) -> list[Any]:
    def compare(connection: sa.Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    async with engine.connect() as connection:
        return await connection.run_sync(compare)


async def _revision(engine: AsyncEngine) -> str | None:
    def current(connection: sa.Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(current)


def test_migrations_ship_inside_the_package_with_one_head() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())

    package_dir = Path(imagegen.db.__file__).parent
    assert Path(scripts.dir).resolve() == (package_dir / "migrations").resolve()
    assert scripts.get_heads() == ["0006_input_images"]
    revisions = [script.revision for script in scripts.walk_revisions()]
    assert revisions == [
        "0006_input_images",
        "0005_keys_usage",
        "0004_money",
        "0003",
        "0002",
        "0001",
    ]


async def test_open_store_migrates_a_fresh_sqlite_file_in_a_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "there" / "imagegen.db"
    store = await open_store(f"sqlite+aiosqlite:///{path}")
    try:
        assert path.is_file()
        assert await _revision(store.engine) == _head()
        await store.check()
    finally:
        await store.aclose()


async def test_migrated_schema_matches_the_tables(engine: AsyncEngine) -> None:
    await migrate(engine)

    assert await _revision(engine) == _head()
    assert await _diff(engine) == []


async def test_the_comparison_would_notice_a_drift(engine: AsyncEngine) -> None:
    # Guards the test above against passing vacuously.
    await migrate(engine)
    drifted = sa.MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["generations"].append_column(sa.Column("priority", sa.Integer))

    diff = await _diff(engine, drifted)
    assert [entry[0] for entry in diff] == ["add_column"]


async def test_migrating_again_changes_nothing(engine: AsyncEngine) -> None:
    await migrate(engine)
    await migrate(engine)

    assert await _revision(engine) == _head()
    assert await _diff(engine) == []


async def test_replicas_starting_together_migrate_once(url: str) -> None:
    engines = [create_engine(url) for _ in range(4)]
    try:
        await asyncio.gather(*(migrate(engine) for engine in engines))
        assert await _revision(engines[0]) == _head()
        assert await _diff(engines[0]) == []
    finally:
        for engine in engines:
            await engine.dispose()


async def test_downgrade_to_base_and_up_again(engine: AsyncEngine) -> None:
    await migrate(engine)
    async with engine.begin() as connection:
        await connection.run_sync(_downgrade_to_base)

    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda c: sa.inspect(c).get_table_names())
    assert set(tables) <= {"alembic_version"}

    await migrate(engine)
    assert await _diff(engine) == []


def _downgrade_to_base(connection: sa.Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, "base")


async def test_sqlite_connections_use_wal_and_enforce_foreign_keys(tmp_path: Path) -> None:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with store.engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert (await pragma("PRAGMA journal_mode")).scalar() == "wal"
            assert (await pragma("PRAGMA foreign_keys")).scalar() == 1
            assert (await pragma("PRAGMA busy_timeout")).scalar() == SQLITE_BUSY_TIMEOUT_MS
    finally:
        await store.aclose()


async def test_many_processes_opening_one_new_sqlite_file(tmp_path: Path) -> None:
    # Converting a file to WAL fails fast (no busy wait) while another connection holds it;
    # several workers of one host starting at once must still all come up.
    for attempt in range(5):
        url = f"sqlite+aiosqlite:///{tmp_path / f'{attempt}.db'}"
        stores = await asyncio.gather(*(open_store(url) for _ in range(6)))
        for store in stores:
            await store.check()
            await store.aclose()


def test_offline_sql_for_postgresql_can_be_printed_without_a_server() -> None:
    # What a DBA reviews before letting imagegen migrate a shared PostgreSQL.
    config = alembic_config("postgresql+asyncpg://user@db.invalid/imagegen")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)

    sql = config.output_buffer.getvalue()
    assert "CREATE TABLE generations" in sql
    assert "JSONB" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql


def test_the_heads_read_from_the_files_are_alembics() -> None:
    from imagegen.db.migrate import script_heads

    assert script_heads() == frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


async def test_a_database_at_head_opens_without_loading_alembic(tmp_path: Path) -> None:
    """The usual start (the schema is current) needs neither Alembic nor what it imports."""
    import subprocess
    import sys

    url = f"sqlite+aiosqlite:///{tmp_path / 'imagegen.db'}"
    store = await open_store(url)
    await store.aclose()
    probe = (
        "import asyncio, sys\n"
        "from imagegen.db import open_store\n"
        "async def main():\n"
        f"    store = await open_store({url!r})\n"
        "    await store.aclose()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


async def test_a_database_behind_head_is_still_upgraded(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        await migrate(engine, "0003")
        assert await _revision(engine) == "0003"
        await migrate(engine)
        assert await _revision(engine) == _head()
        assert await _diff(engine) == []
    finally:
        await engine.dispose()
