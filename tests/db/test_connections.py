"""PostgreSQL connections the server closed while they rested in the pool (a restart, an idle
timeout) are replaced on checkout, so the next transaction works; a connection used a moment ago
is not pinged first."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from imagegen.db import open_store
from imagegen.db.engine import replace_dead_connections
from imagegen.models import GenerationRequest

from . import postgres_database

REQUEST = GenerationRequest(model="a/b", prompt="p", num_images=1, width=64, height=64)


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one())


async def terminate(url: str, pid: int) -> None:
    """End the server process of one connection, as a restart would."""
    admin = create_async_engine(url, poolclass=sa.pool.NullPool)
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
    finally:
        await admin.dispose()


async def test_a_pooled_connection_the_server_closed_is_replaced() -> None:
    async with postgres_database() as url:
        store = await open_store(url)
        try:
            created = await store.create(REQUEST, provider="p")
            pid = await backend_pid(store.engine)
            await terminate(url, pid)
            await asyncio.sleep(0.2)  # the driver hears the server close it

            assert (await store.get(created.id)).id == created.id
            assert await backend_pid(store.engine) != pid
        finally:
            await store.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_only_a_connection_that_rested_is_pinged_and_one_failing_its_ping_is_replaced() -> (
    None
):
    async with postgres_database() as url:
        engine = create_async_engine(url, pool_size=1, max_overflow=0)
        clock = Clock()
        pinged: list[Any] = []
        failing = False

        def ping(dbapi_connection: Any) -> None:
            pinged.append(dbapi_connection)
            if failing:
                raise OSError("no answer")

        replace_dead_connections(engine.sync_engine.pool, ping, idle=5.0, monotonic=clock)
        try:
            first = await backend_pid(engine)  # a new connection: not pinged
            clock.now = 4.0
            assert await backend_pid(engine) == first  # used a moment ago: not pinged
            assert pinged == []

            clock.now = 10.0  # rested 6 s: pinged, answers, kept
            assert await backend_pid(engine) == first
            assert len(pinged) == 1

            clock.now = 20.0
            failing = True  # rested again, and its ping fails: replaced
            second = await backend_pid(engine)
            assert len(pinged) == 2
            assert second != first
        finally:
            await engine.dispose()
