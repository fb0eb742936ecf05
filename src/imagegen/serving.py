"""What ``imagegen serve`` takes before it touches a job: its data directory and its socket.

A second ``imagegen serve`` on the same data directory or port must leave the first alone. So
the data directory is locked first (an advisory ``flock`` on ``imagegen.lock``, released by the
kernel when the process dies, ``kill -9`` included), then the socket is bound and listening;
only then does the app start, run its migrations and take up unfinished jobs. Whichever of the
two is already taken stops start-up with one line saying so, having changed nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "imagegen.lock"
BACKLOG = 2048  # uvicorn's default


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


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening (connections queue while the app
    starts); ``ServeRefused`` naming the address when it cannot be bound."""
    family = socket.AF_INET6 if _is_ipv6(host) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ServeRefused(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False
