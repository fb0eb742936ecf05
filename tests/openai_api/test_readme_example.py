"""The README's OpenAI example runs as written on a fresh install: no catalog file, the built-in
short names (``flux``), against the Replicate double."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from tests.fakes.replicate_double import ReplicateDouble
from tests.openai_api.harness import InProcessImagegen, settings_for

README = Path(__file__).resolve().parents[2] / "README.md"
README_BASE_URL = "http://127.0.0.1:8000/v1"


def readme_openai_example() -> str:
    section = README.read_text().split("## OpenAI-compatible API", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "the README's OpenAI section has a Python example"
    return found.group(1)


@pytest.fixture(scope="module")
def fresh_install(
    tmp_path_factory: pytest.TempPathFactory, replicate_double_server: ReplicateDouble
) -> Iterator[InProcessImagegen]:
    data_dir = tmp_path_factory.mktemp("fresh")
    settings = settings_for(data_dir, None, replicate_double_server.base_url)
    assert settings.catalog_path is None
    with InProcessImagegen(settings, {}) as server:
        yield server


def test_the_readme_openai_example_works_with_no_catalog_file(
    fresh_install: InProcessImagegen, replicate_double: ReplicateDouble
) -> None:
    code = readme_openai_example()
    assert README_BASE_URL in code
    assert 'model="flux"' in code
    namespace: dict[str, Any] = {}
    exec(code.replace(README_BASE_URL, f"{fresh_install.base_url}/v1"), namespace)
    result = namespace["result"]
    assert len(result.data) == 2
    for item in result.data:
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        image.load()
        assert image.width > image.height  # 1024x768 asked: a landscape ratio
    generation = httpx.get(f"{fresh_install.base_url}/api/v1/generations/{result.id}").json()
    assert generation["status"] == "succeeded"
    assert generation["model"] == "flux"
    by_model = replicate_double.stats()["creates"]["by_model"]
    assert set(by_model) == {"black-forest-labs/flux-schnell"}, by_model
