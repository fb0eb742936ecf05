"""One in-process imagegen per module, over both doubles, routed by ``harness.catalog_toml``.

The doubles are reset before each test; their stats count upstream calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from tests.fakes.openai_double import OpenAIDouble
from tests.fakes.openai_fixtures import API_KEY, double_fixtures
from tests.fakes.replicate_double import ReplicateDouble
from tests.openai_api.harness import (
    OPENAI_KEY_ENV,
    WRONG_KEY_ENV,
    InProcessImagegen,
    catalog_toml,
    settings_for,
)

openai_double, _reset_openai_double = double_fixtures()

ENVIRON = {OPENAI_KEY_ENV: API_KEY, WRONG_KEY_ENV: "sk-stale-000000000000"}


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory: pytest.TempPathFactory, openai_double: OpenAIDouble) -> Path:
    path = tmp_path_factory.mktemp("catalog") / "catalog.toml"
    path.write_text(catalog_toml(openai_double.base_url))
    return path


@pytest.fixture(scope="module")
def imagegen(
    tmp_path_factory: pytest.TempPathFactory,
    catalog_path: Path,
    replicate_double_server: ReplicateDouble,
) -> Iterator[InProcessImagegen]:
    data_dir = tmp_path_factory.mktemp("imagegen")
    settings = settings_for(data_dir, catalog_path, replicate_double_server.base_url)
    with InProcessImagegen(settings, ENVIRON) as server:
        yield server


@pytest.fixture
def replicate(replicate_double: ReplicateDouble) -> ReplicateDouble:
    """The Replicate double, reset for this test."""
    return replicate_double


@pytest.fixture
def sdk(imagegen: InProcessImagegen) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{imagegen.base_url}/v1", api_key="anything", max_retries=0)


@pytest.fixture
def api(imagegen: InProcessImagegen) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=imagegen.base_url, timeout=30) as client:
        yield client
