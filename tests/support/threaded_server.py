"""A uvicorn server in a background thread on loopback: what every in-process fake and harness
in the tests needs, written once."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


def bind_loopback(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound TCP socket. ``IPPROTO_TCP``, not the default 0: asyncio sets TCP_NODELAY only on
    sockets whose ``proto`` is TCP (accepted ones inherit it); without it every small reply waits
    out the client's delayed ACK (~40 ms)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class ThreadedServer:
    """Runs ``server`` on ``sock`` in a daemon thread; ``start`` returns once it serves."""

    def __init__(self, server: uvicorn.Server, *, name: str) -> None:
        self.server = server
        self._name = name
        self._thread: threading.Thread | None = None

    def start(self, sock: socket.socket, *, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True, name=self._name
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self._name} did not start")
            time.sleep(0.005)

    def stop(self, *, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self.server.should_exit = True
            self._thread.join(timeout=timeout)
            self._thread = None
