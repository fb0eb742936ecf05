"""imagegen served in-process (uvicorn on a thread) over the real composition root, backed by
the Replicate and OpenAI doubles, routed by a catalog file written for the test."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import uvicorn
from tests.support.lifecycle import Started
from tests.support.threaded_server import ThreadedServer, bind_loopback

from imagegen.api.app import create_app
from imagegen.config import Settings
from imagegen.services import build_services

OPENAI_KEY_ENV = "TEST_OPENAI_KEY"
WRONG_KEY_ENV = "TEST_WRONG_OPENAI_KEY"


def catalog_toml(openai_base_url: str) -> str:
    """Two OpenAI-compatible providers on the same double (one with a wrong key) + Replicate."""
    return f"""
[providers.openai]
kind = "openai"
base_url = "{openai_base_url}"
api_key_env = "{OPENAI_KEY_ENV}"

[providers.stale]
kind = "openai"
base_url = "{openai_base_url}/v1"
api_key_env = "{WRONG_KEY_ENV}"

[[models]]
name = "dall-e-3"
provider = "openai"
upstream = "dall-e-3"

[[models]]
name = "gpt-image-1"
provider = "openai"
upstream = "gpt-image-1"
defaults = {{ response_format = "b64_json" }}

[[models]]
name = "sdxl"
aliases = ["stable-diffusion-xl"]
provider = "openai"
upstream = "stabilityai/stable-diffusion-xl-base-1.0"
defaults = {{ width = 768, height = 512 }}

[[models]]
name = "stale-dall-e-2"
provider = "stale"
upstream = "dall-e-2"

[[models]]
name = "flux"
aliases = ["flux-schnell"]
provider = "replicate"
upstream = "black-forest-labs/flux-schnell"
defaults = {{ width = 512, height = 512 }}
max_images = 4
"""


def settings_for(
    data_dir: Path, catalog: Path | None, replicate_base_url: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "catalog_path": catalog,
        "replicate_api_key": "r8_test",
        "replicate_base_url": replicate_base_url,
        "replicate_wait": 1,
        "poll_interval": 0.02,
        "request_timeout": 20,
        "log_level": "warning",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class InProcessImagegen(Started):
    """``create_app(settings)`` over ``build_services`` with ``environ`` as the key source."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        services = functools.partial(build_services, environ=dict(environ))
        app = create_app(settings, services=services)
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, timeout_graceful_shutdown=1
        )
        self._runner = ThreadedServer(uvicorn.Server(config), name="imagegen in-process")
        self.base_url = ""

    def start(self) -> Self:
        sock = bind_loopback()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._runner.start(sock, timeout=20)
        return self

    def stop(self) -> None:
        self._runner.stop()
