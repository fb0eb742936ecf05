"""Alembic environment for imagegen.

``imagegen.db.migrate`` passes its own (locked, transactional) connection in
``config.attributes["connection"]``. Without one, ``sqlalchemy.url`` is used: offline to print
SQL (``--sql``), online to open a short-lived engine (for ``check`` or ``revision --autogenerate``).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from imagegen.db.migrate import create_engine
from imagegen.db.tables import METADATA, JSONDocument, UTCDateTime

config = context.config
target_metadata = METADATA


def _render_item(kind: str, obj: object, autogen: AutogenContext) -> str | Literal[False]:
    # A migration is a frozen snapshot: write imagegen's types as the plain types they store.
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if kind == "type" and isinstance(obj, JSONDocument):
        autogen.imports.add("from sqlalchemy.dialects import postgresql")
        return 'sa.JSON().with_variant(postgresql.JSONB(), "postgresql")'
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=_render_item,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        render_item=_render_item,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no connection in config.attributes and no sqlalchemy.url set")
    asyncio.run(_run_with_own_engine(url))


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
