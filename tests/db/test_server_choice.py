"""Which PostgreSQL the database tests use: the configured server when it answers, else a private
one started for the session (tests/support/postgres.py), so a fresh machine needs none."""

from __future__ import annotations

import asyncio
import socket

from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from tests.support.postgres import PrivatePostgres, choose_server, reachable


def closed_port_url() -> str:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test"


def test_an_unreachable_server_is_replaced_by_a_private_one() -> None:
    started: list[str] = []

    def start_private() -> str:
        started.append("private")
        return "postgresql+asyncpg://postgres@127.0.0.1:1234/test"

    url = choose_server(closed_port_url(), is_reachable=reachable, start_private=start_private)
    assert url == "postgresql+asyncpg://postgres@127.0.0.1:1234/test"
    assert started == ["private"]


def test_a_reachable_server_is_used_as_it_is() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{listener.getsockname()[1]}/test"

        def start_private() -> str:
            raise AssertionError("no private server when the configured one answers")

        assert choose_server(url, is_reachable=reachable, start_private=start_private) == url


def test_the_private_server_serves_databases_and_goes_away() -> None:
    server = PrivatePostgres()
    try:
        url = server.start()
        assert reachable(url)

        async def version() -> str:
            engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            try:
                async with engine.connect() as connection:
                    await connection.exec_driver_sql('CREATE DATABASE "imagegen_probe"')
                    return str((await connection.exec_driver_sql("SELECT version()")).scalar())
            finally:
                await engine.dispose()

        assert "PostgreSQL" in asyncio.run(version())
    finally:
        server.stop()
    assert not reachable(url)
    assert not server.root.exists()
