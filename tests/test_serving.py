"""``imagegen serve`` takes its data directory and its port before anything else, and a second
one on either is refused with a message naming what is taken; it runs uvicorn on uvloop, with
httptools' parser."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from imagegen.config import Settings
from imagegen.serving import (
    HeaderTimeoutProtocol,
    ServeRefused,
    backlog_warning,
    hold_data_dir,
    listen,
    uvicorn_config,
)


def test_a_data_directory_is_held_by_one_serve_at_a_time(tmp_path) -> None:
    data = tmp_path / "data"
    in_use = "is in use by another imagegen serve"
    with (
        hold_data_dir(data),
        pytest.raises(ServeRefused, match=in_use) as refused,
        hold_data_dir(data),
    ):
        pass  # pragma: no cover
    assert str(refused.value).endswith("stop it first, or set IMAGEGEN_DATA_DIR")
    with hold_data_dir(data):  # released on the way out
        assert (data / "imagegen.lock").read_text().strip().isdigit()


def test_a_taken_port_is_refused_naming_the_address() -> None:
    taken = listen("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ServeRefused, match=f"cannot listen on 127.0.0.1:{port}"):
            listen("127.0.0.1", port)
    finally:
        taken.close()


def test_the_socket_listens_before_the_app_starts() -> None:
    sock = listen("127.0.0.1", 0)
    try:
        # A client can connect (it waits in the backlog) although nothing accepts yet.
        with socket.create_connection(sock.getsockname(), timeout=2):
            pass
    finally:
        sock.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's accept queue")
def test_connections_past_the_backlog_wait_outside_the_accept_queue() -> None:
    """The kernel queues ``backlog`` connections (and one more) nobody has accepted yet; the
    next one's handshake does not complete until one is accepted."""
    sock = listen("127.0.0.1", 0, backlog=1)
    clients: list[socket.socket] = []
    try:
        for _ in range(2):
            clients.append(socket.create_connection(sock.getsockname(), timeout=2))
        with pytest.raises(TimeoutError):
            clients.append(socket.create_connection(sock.getsockname(), timeout=0.5))
    finally:
        for client in clients:
            client.close()
        sock.close()


def test_the_backlog_fits_every_connection_the_workers_may_serve(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).backlog == 2048  # 2000 connections, one process
    assert Settings(data_dir=tmp_path, max_connections=3000, workers=2).backlog == 6000
    assert Settings(data_dir=tmp_path, max_connections=3000, listen_backlog=100).backlog == 100
    # uvicorn listens again on the socket it is handed, with its own backlog: it must be ours.
    settings = Settings(data_dir=tmp_path, max_connections=3000, workers=2)
    assert uvicorn_config(_app, settings).backlog == 6000


def test_a_backlog_the_kernel_caps_is_warned_about(tmp_path: Path) -> None:
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text("4096\n")
    assert backlog_warning(4096, somaxconn) is None
    warning = backlog_warning(40000, somaxconn)
    assert warning is not None
    assert "net.core.somaxconn (4096)" in warning
    assert "sysctl -w net.core.somaxconn=40000" in warning
    assert backlog_warning(40000, tmp_path / "missing") is None


async def _app(scope: object, receive: object, send: object) -> None:
    return None


def test_serve_runs_on_uvloop_and_httptools(tmp_path: Path) -> None:
    config = uvicorn_config(_app, Settings(data_dir=tmp_path))
    assert config.loop == "uvloop"
    assert isinstance(config.http, type)
    assert issubclass(config.http, HeaderTimeoutProtocol)
    assert issubclass(config.http, HttpToolsProtocol)
    factory = config.get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()
