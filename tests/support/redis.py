"""The Redis server the tests use: the machine's (127.0.0.1:6379, as in CI) when it answers, else
a private ``redis-server --port <free> --save ''`` started for the session. ``PrivateRedis``
also serves tests that stop and restart their own server on the same port."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Self

from tests.support.lifecycle import Started

DEFAULT_URL = "redis://127.0.0.1:6379/0"
CONFIGURED_URL = os.environ.get("IMAGEGEN_TEST_REDIS_URL") or DEFAULT_URL


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """Whether a Redis on ``host:port`` answers PING."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis(Started):
    """A ``redis-server`` of its own on a free port, no persistence; ``stop`` and ``start``
    again keep the port."""

    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed and no Redis answers on 6379")
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir or Path("/tmp")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.workdir)]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not answers(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        self._proc = None


@cache
def server_url() -> str:
    """The machine's Redis when it answers, else a private one for the rest of the session."""
    from urllib.parse import urlsplit

    parsed = urlsplit(CONFIGURED_URL)
    if answers(parsed.port or 6379, parsed.hostname or "127.0.0.1"):
        return CONFIGURED_URL
    private = PrivateRedis().start()
    atexit.register(private.stop)
    return private.url


def unique_prefix() -> str:
    """A key prefix of one test's own, so parallel runs never share a key or channel."""
    return f"imagegen-test:{uuid.uuid4().hex[:12]}:"
