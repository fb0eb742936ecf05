"""Processes for the fault matrix: the Replicate double and three ``imagegen serve`` in front of it.

- ``main``: a 10 s deadline; schemas are not cached, so every generation reads its model (and
  model-read faults apply); downloads give up after 2 s; outputs over 1 MiB are refused;
  downloads may reach the double's port and one closed port on 127.0.0.1 (``closed_port``);
- ``short``: the same with a 2 s deadline, for the rows that run into it;
- ``refused``: Replicate's base URL is a closed port.

The double lets a create finish no sooner than it returns (``max_wait=0``), so imagegen polls
every prediction and read faults apply too. A sentinel listener on 127.0.0.2 (loopback, so a
private address) counts connections: no row may ever reach it. Traffic stays on loopback.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.fakes.replicate_double import DoubleControl, DoubleProcess
from tests.support.imagegen_process import ImagegenProcess, free_port

TOKEN = "r8_faults_token"
DEADLINES = {"main": 10.0, "short": 2.0, "refused": 2.0}
MAX_IMAGE_BYTES = 1024 * 1024
DOWNLOAD_TIMEOUT = 4.0  # room for the retries of a reset download on a busy machine
#: A suffix entry that permits 127.0.0.2 without trusting it (only exact entries are trusted),
#: so that the private-address check alone stands between imagegen and the sentinel.
PRIVATE_SUFFIX = ".0.0.2"


class Sentinel:
    """A listener on a private (loopback) address that counts every connection made to it."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self._sock = socket.create_server((host, 0))
        self._sock.settimeout(0.2)
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


@pytest.fixture(scope="session")
def sentinel() -> Iterator[Sentinel]:
    listener = Sentinel()
    yield listener
    listener.close()


@pytest.fixture(scope="session")
def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on, allowed for downloads as ``127.0.0.1:<port>``."""
    return free_port()


@pytest.fixture(scope="session")
def fault_double() -> Iterator[DoubleProcess]:
    args = ("--token", TOKEN, "--duration", "0.1", "--queue-time", "0.05", "--max-wait", "0")
    with DoubleProcess(*args) as process:
        yield process


@pytest.fixture
def upstream(fault_double: DoubleProcess) -> Iterator[DoubleControl]:
    assert fault_double.control is not None
    fault_double.control.reset()
    yield fault_double.control
    fault_double.control.reset()


def _server(tmp: Path, base_url: str, deadline: float, closed_port: int) -> ImagegenProcess:
    allowed = [PRIVATE_SUFFIX, f"127.0.0.1:{closed_port}"]
    return ImagegenProcess(
        tmp,
        {
            "REPLICATE_API_KEY": TOKEN,
            "REPLICATE_BASE_URL": base_url,
            "IMAGEGEN_REQUEST_TIMEOUT": str(deadline),
            "IMAGEGEN_REPLICATE_WAIT": "1",
            "IMAGEGEN_POLL_INTERVAL": "0.05",
            "IMAGEGEN_SCHEMA_CACHE_TTL": "0",
            "IMAGEGEN_DOWNLOAD_TIMEOUT": str(DOWNLOAD_TIMEOUT),
            "IMAGEGEN_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
            "IMAGEGEN_DOWNLOAD_ALLOWED_HOSTS": json.dumps(allowed),
        },
    )


@pytest.fixture(scope="session")
def servers(
    tmp_path_factory: pytest.TempPathFactory, fault_double: DoubleProcess, closed_port: int
) -> Iterator[dict[str, ImagegenProcess]]:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    bases = {"main": fault_double.base_url, "short": fault_double.base_url, "refused": closed}
    started: dict[str, ImagegenProcess] = {}
    try:
        for name, base in bases.items():
            tmp = tmp_path_factory.mktemp(f"imagegen-{name}")
            started[name] = _server(tmp, base, DEADLINES[name], closed_port).start()
        yield started
    finally:
        for process in started.values():
            process.stop()
