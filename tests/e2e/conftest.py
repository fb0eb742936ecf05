"""End to end: ``imagegen serve`` and the Replicate double, each a real process on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.fakes.replicate_double import DoubleProcess
from tests.support.imagegen_process import ImagegenProcess

TOKEN = "r8_e2e_token"


@pytest.fixture(scope="session")
def double() -> Iterator[DoubleProcess]:
    with DoubleProcess("--token", TOKEN, "--duration", "0.2", "--queue-time", "0.05") as process:
        yield process


@pytest.fixture
def control(double: DoubleProcess):
    assert double.control is not None
    double.control.reset()
    yield double.control
    double.control.reset()


def imagegen(tmp: Path, double: DoubleProcess, **env: str) -> ImagegenProcess:
    base = {
        "REPLICATE_API_KEY": TOKEN,
        "REPLICATE_BASE_URL": double.base_url,
        "IMAGEGEN_POLL_INTERVAL": "0.05",
        "IMAGEGEN_REPLICATE_WAIT": "1",
        "IMAGEGEN_REQUEST_TIMEOUT": "20",
    }
    base.update(env)
    return ImagegenProcess(tmp, base)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, double: DoubleProcess):
    with imagegen(tmp_path_factory.mktemp("imagegen"), double) as process:
        yield process


@pytest.fixture
def api(server: ImagegenProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client
