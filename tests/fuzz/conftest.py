"""A live ``imagegen serve`` backed by the Replicate double, for schemathesis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.fakes.replicate_double import DoubleProcess
from tests.support.imagegen_process import ImagegenProcess

TOKEN = "r8_fuzz_token"
UNLIMITED = ("--create-rate", "1e9", "--create-burst", "1000000000")
UNLIMITED += ("--get-rate", "1e9", "--get-burst", "1000000000")
UNLIMITED += ("--other-rate", "1e9", "--other-burst", "1000000000")


@pytest.fixture(scope="session")
def fuzz_double() -> Iterator[DoubleProcess]:
    args = ("--token", TOKEN, "--duration", "0", "--queue-time", "0", *UNLIMITED)
    with DoubleProcess(*args) as process:
        yield process


@pytest.fixture(scope="session")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, fuzz_double: DoubleProcess
) -> Iterator[ImagegenProcess]:
    env = {
        "REPLICATE_API_KEY": TOKEN,
        "REPLICATE_BASE_URL": fuzz_double.base_url,
        "IMAGEGEN_REQUEST_TIMEOUT": "20",
        "IMAGEGEN_REPLICATE_WAIT": "5",
        "IMAGEGEN_POLL_INTERVAL": "0.05",
    }
    with ImagegenProcess(tmp_path_factory.mktemp("imagegen-fuzz"), env) as process:
        yield process
