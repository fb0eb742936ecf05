"""Shared pytest fixtures. Each block below belongs to one fake; keep blocks self-contained."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.fakes.replicate_double import DoubleConfig, DoubleProcess, ReplicateDouble
from tests.support.seaweedfs import SeaweedFS

# ==== Replicate double (tests/fakes/replicate/) ===================================================
# replicate_double_server  session: one uvicorn thread on 127.0.0.1:<free port>
# replicate_double         per test: that server, reset (config, predictions, files, faults, stats)
# replicate_client         per test: replicate.Client(api_token, base_url) polling every 10 ms
# replicate_double_process session: the double as a child process (`python -m ...`), for e2e


@pytest.fixture(scope="session")
def replicate_double_server() -> Iterator[ReplicateDouble]:
    with ReplicateDouble(DoubleConfig()) as double:
        yield double


@pytest.fixture
def replicate_double(replicate_double_server: ReplicateDouble) -> Iterator[ReplicateDouble]:
    replicate_double_server.reset()
    yield replicate_double_server
    replicate_double_server.reset()


@pytest.fixture
def replicate_client(replicate_double: ReplicateDouble) -> Any:
    return replicate_double.client()


@pytest.fixture(scope="session")
def replicate_double_process() -> Iterator[DoubleProcess]:
    with DoubleProcess() as process:
        yield process


# ==== end of Replicate double block ===============================================================


# ==== SeaweedFS (tests/support/seaweedfs.py) =====================================================
# seaweedfs  session: one `weed mini` on free loopback ports, bucket "imagegen"; tests that use it
#            take their own key prefix (s3_prefix) so they never see each other's objects


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def s3_prefix() -> str:
    return f"tests/{uuid.uuid4().hex[:12]}"


# ==== end of SeaweedFS block ======================================================================


# ==== Environment isolation =======================================================================
# Settings read IMAGEGEN_* and provider variables: a developer's shell must not change a test.


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("IMAGEGEN_", "REPLICATE_", "OPENAI_", "AWS_")):
            monkeypatch.delenv(name, raising=False)


# ==== Suite layers ================================================================================
# Every test under tests/e2e, tests/faults and tests/fuzz carries that layer's marker, so
# `make test-fast` (-m "not e2e and not faults and not fuzz") leaves them out by folder.

LAYERS = {"e2e": "e2e", "faults": "faults", "fuzz": "fuzz"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath / "tests"
    for item in items:
        parts = item.path.relative_to(root).parts if item.path.is_relative_to(root) else ()
        if len(parts) > 1 and parts[0] in LAYERS:
            item.add_marker(LAYERS[parts[0]])
