"""imagegen in-process over both doubles, with API keys: an admin key made with the CLI before
the server starts, other keys through the admin API. A fresh server (and database) per test, so
usage and metrics start from zero."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.fakes.openai_double import OpenAIDouble
from tests.fakes.openai_fixtures import API_KEY, double_fixtures
from tests.fakes.replicate_double import ReplicateDouble
from tests.openai_api.harness import InProcessImagegen, settings_for
from typer.testing import CliRunner

from imagegen.cli import app as cli_app

openai_double, _reset_openai_double = double_fixtures()

OPENAI_KEY_ENV = "TEST_OPENAI_KEY"
PRICE_PER_IMAGE = 0.04  # dall-e-3
PRICE_PER_SECOND = 0.0025  # flux, per second of Replicate's predict_time


def catalog_toml(openai_base_url: str) -> str:
    return f"""
[providers.openai]
kind = "openai"
base_url = "{openai_base_url}"
api_key_env = "{OPENAI_KEY_ENV}"

[[models]]
name = "dall-e-3"
provider = "openai"
upstream = "dall-e-3"
price_per_image = {PRICE_PER_IMAGE}

[[models]]
name = "sdxl"
provider = "openai"
upstream = "stabilityai/stable-diffusion-xl-base-1.0"
defaults = {{ width = 512, height = 512 }}

[[models]]
name = "flux"
aliases = ["flux-schnell"]
provider = "replicate"
upstream = "black-forest-labs/flux-schnell"
defaults = {{ width = 512, height = 512 }}
price_per_second = {PRICE_PER_SECOND}
"""


def cli(data_dir: Path, *args: str) -> str:
    """``imagegen ARGS`` against ``data_dir``'s database; its output (exit 0 asserted)."""
    result = CliRunner().invoke(cli_app, list(args), env={"IMAGEGEN_DATA_DIR": str(data_dir)})
    assert result.exit_code == 0, result.output
    return result.output


def cli_key(data_dir: Path, name: str, *options: str) -> str:
    """A new key made with ``imagegen keys create``: the last line of its output."""
    return cli(data_dir, "keys", "create", name, *options).strip().splitlines()[-1]


@dataclass
class Served:
    server: InProcessImagegen
    data_dir: Path
    admin_key: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def new_key(self, name: str, **limits: Any) -> str:
        """A key made through the admin API."""
        with self.client(self.admin_key) as admin:
            response = admin.post("/api/v1/keys", json={"name": name, **limits})
        assert response.status_code == 201, response.text
        secret: str = response.json()["key"]
        return secret


@pytest.fixture
def catalog_path(tmp_path: Path, openai_double: OpenAIDouble) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(catalog_toml(openai_double.base_url))
    return path


@pytest.fixture
def start(
    tmp_path: Path, catalog_path: Path, replicate_double: ReplicateDouble
) -> Iterator[Callable[..., Served]]:
    """Start a keyed imagegen (``settings`` overrides); stopped after the test."""
    started: list[InProcessImagegen] = []

    def run(**settings: Any) -> Served:
        data_dir = tmp_path / f"imagegen-{len(started)}"
        admin_key = cli_key(data_dir, "admin", "--admin")
        values = settings_for(data_dir, catalog_path, replicate_double.base_url, **settings)
        server = InProcessImagegen(values, {OPENAI_KEY_ENV: API_KEY}).start()
        started.append(server)
        return Served(server, data_dir, admin_key)

    yield run
    for server in started:
        server.stop()


@pytest.fixture
def served(start: Callable[..., Served]) -> Served:
    return start()
