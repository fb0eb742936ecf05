"""How ``imagegen serve`` runs: what it takes before it touches a job, and how uvicorn is set.

A second ``imagegen serve`` on the same data directory or port must leave the first alone. So
the data directory is locked first (an advisory ``flock`` on ``imagegen.lock``, released by the
kernel when the process dies, ``kill -9`` included), then the socket is bound and listening;
only then does the app start, run its migrations and take up unfinished jobs. Whichever of the
two is already taken stops start-up with one line saying so, having changed nothing.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but gives a new connection,
or one that sends its headers a byte at a time, all the time it wants: a few thousand such
connections would hold every file descriptor. :class:`HeaderTimeoutProtocol` closes a
connection whose request headers are not complete ``IMAGEGEN_HEADER_TIMEOUT`` seconds after it
opened (or after its previous response), with ``408``. Past ``IMAGEGEN_MAX_CONNECTIONS`` open
connections (or requests in progress) it answers a new request ``503`` with ``Retry-After`` at
once, in the endpoint's own error shape, and closes that connection (where uvicorn's
``limit_concurrency`` would answer plain text).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import os
import resource
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from imagegen.api.errors import error_response
from imagegen.config import Settings

log = logging.getLogger(__name__)

_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: 50\r\n\r\n"
    b'{"error": "request headers not received in time"}'
)
_SPARE_DESCRIPTORS = 256  # database, provider connections, files, logs


async def over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer past ``IMAGEGEN_MAX_CONNECTIONS``: 503, Retry-After, connection closed."""
    message = "imagegen is serving as many connections as it may; try again shortly"
    response = error_response(Request(scope), 503, message, headers={"Retry-After": "1"})
    response.headers["connection"] = "close"
    await response(scope, receive, send)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on receiving each request's headers, and a
    cap on connections answered in the API's own error shape."""

    header_timeout: float = 10.0
    max_connections: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        cap = self.max_connections
        if cap is None or (len(self.connections) < cap and len(self.tasks) < cap):
            super().on_headers_complete()
            return
        log.warning("%d connections open: a request was answered 503", len(self.connections))
        app, self.app = self.app, over_capacity  # the request cycle takes the app from here
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(_TIMED_OUT)
            self.transport.close()


def protocol_class(header_timeout: float, max_connections: int) -> type[HeaderTimeoutProtocol]:
    """The protocol with these limits (uvicorn builds protocols from a class)."""
    attributes = {"header_timeout": header_timeout, "max_connections": max_connections}
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), attributes)


def uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The server ``imagegen serve`` runs; ``overrides`` go to ``uvicorn.Config`` as they are."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        # JSON logs: uvicorn's own loggers go through imagegen's handler, not uvicorn's format.
        "log_config": None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        "access_log": False,  # imagegen logs each request itself (api/observe.py)
        "ws": "none",  # no websocket routes: don't import a websocket implementation
        # uvloop and httptools (uvicorn[standard]) named, not left to "auto": what is measured
        # in BENCHMARKS.md is what runs.
        "loop": "uvloop",
        "http": protocol_class(settings.header_timeout, settings.max_connections),
        "timeout_keep_alive": settings.keep_alive_timeout,
        # uvicorn listens again on the socket it is given, with this backlog.
        "backlog": settings.backlog,
        "timeout_graceful_shutdown": 5,
        **overrides,
    }
    return uvicorn.Config(app, **options)


def raise_descriptor_limit(connections: int) -> None:
    """Let the process hold ``connections`` sockets and its spare files, within the hard limit
    (the soft limit is often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + _SPARE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


LOCK_FILE = "imagegen.lock"
BACKLOG = 2048  # uvicorn's default
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


class ServeRefused(Exception):
    """The data directory or the address is in use; the message says which."""


@contextlib.contextmanager
def hold_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold ``data_dir``'s lock while the block runs; ``ServeRefused`` if another process
    holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ServeRefused(
                f"data directory {str(data_dir)!r} is in use by another imagegen serve "
                f"(pid {holder}); stop it first, or set IMAGEGEN_DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def listen(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening (connections queue while the app
    starts, ``backlog`` at most); ``ServeRefused`` naming the address when it cannot be bound."""
    family = socket.AF_INET6 if _is_ipv6(host) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ServeRefused(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def backlog_warning(backlog: int, limit: Path = SOMAXCONN) -> str | None:
    """What to say when the kernel will cap ``backlog`` (at ``net.core.somaxconn``, read from
    ``limit``); None when it will not, or where there is no such file."""
    try:
        cap = int(limit.read_text())
    except (OSError, ValueError):
        return None
    if backlog <= cap:
        return None
    return (
        f"the listen backlog is {backlog} but the kernel caps it at net.core.somaxconn ({cap}): "
        "connections arriving faster than the workers accept them past that are dropped and "
        f"retried, or reset; raise it (sysctl -w net.core.somaxconn={backlog}) or set "
        f"IMAGEGEN_LISTEN_BACKLOG={cap}"
    )


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False
