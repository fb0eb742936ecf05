"""Loading the catalog file: a good file, every kind of bad one, keys, aliases and limits."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagegen.catalog_file import CatalogFile, load_catalog_file
from imagegen.cli import app as cli
from imagegen.config import Settings
from imagegen.errors import ConfigurationError
from imagegen.jobs.setup import provider_limits
from imagegen.services import build_providers, provider_specs

GOOD = """
[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/"
api_key_env = "OPENAI_API_KEY"

[providers.together]
kind = "openai"
base_url = "https://api.together.xyz"
api_key_env = "TOGETHER_API_KEY"

[[models]]
name = "flux"
aliases = ["flux-schnell"]
provider = "replicate"
upstream = "black-forest-labs/flux-schnell"
defaults = { width = 1024, height = 768 }
max_images = 4

[[models]]
name = "dall-e-3"
provider = "openai"
upstream = "dall-e-3"

[[models]]
name = "sdxl"
provider = "together"
upstream = "stabilityai/stable-diffusion-xl-base-1.0"
defaults = { response_format = "b64_json" }
"""

MODEL = '[[models]]\nname = "m"\nprovider = "replicate"\nupstream = "a/b"\n'


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]


def write(tmp_path: Path, text: str, name: str = "catalog.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_no_file_is_todays_behaviour(settings: Settings) -> None:
    catalog = load_catalog_file(None, settings)
    assert catalog == CatalogFile()
    assert catalog.replicate_passthrough
    assert catalog.provider_entries()["replicate"].kind == "replicate"


def test_a_good_file_loads(tmp_path: Path, settings: Settings) -> None:
    catalog = load_catalog_file(write(tmp_path, GOOD), settings)
    assert sorted(catalog.provider_entries()) == ["openai", "replicate", "together"]
    assert catalog.providers["openai"].base_url == "https://api.openai.com"
    flux = catalog.models[0]
    assert (flux.aliases, flux.max_images) == (["flux-schnell"], 4)
    assert (flux.defaults.width, flux.defaults.height) == (1024, 768)
    assert catalog.models[2].defaults.response_format == "b64_json"


def test_two_openai_compatible_providers_get_their_own_keys(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = load_catalog_file(write(tmp_path, GOOD), settings)
    environ = {"OPENAI_API_KEY": "sk-openai", "TOGETHER_API_KEY": " tg-key "}
    specs = {spec.name: spec for spec in provider_specs(catalog, environ)}
    assert specs["openai"].api_key == "sk-openai"
    assert specs["together"].api_key == "tg-key"
    assert specs["together"].base_url == "https://api.together.xyz"
    assert specs["replicate"].api_key_env is None  # REPLICATE_API_KEY, through Settings

    with caplog.at_level(logging.WARNING):
        specs = {spec.name: spec for spec in provider_specs(catalog, {"OPENAI_API_KEY": ""})}
    assert specs["openai"].api_key is None
    assert specs["together"].api_key is None
    assert "TOGETHER_API_KEY is not set" in caplog.text


TWO_ACCOUNTS = """
[providers.replicate_a]
kind = "replicate"
api_key_env = "REPLICATE_A_TOKEN"
max_concurrency = 2
creates_per_minute = 60

[providers.replicate_b]
kind = "replicate"
api_key_env = "REPLICATE_B_TOKEN"

[providers.local]
kind = "openai"
base_url = "http://127.0.0.1:8080"
max_concurrency = 1
"""


async def test_two_replicate_accounts_are_two_providers_with_their_own_limits(
    tmp_path: Path, settings: Settings
) -> None:
    catalog = load_catalog_file(write(tmp_path, TWO_ACCOUNTS), settings)
    environ = {"REPLICATE_A_TOKEN": "r8_a", "REPLICATE_B_TOKEN": "r8_b"}
    specs = provider_specs(catalog, environ)
    async with AsyncExitStack() as stack:
        providers = build_providers(stack, specs, settings)
        assert {name: p.name for name, p in providers.items()} == {
            "replicate": "replicate",
            "replicate_a": "replicate_a",
            "replicate_b": "replicate_b",
            "local": "local",
        }
    limits = catalog.provider_limits(settings)
    assert (limits["replicate_a"].max_concurrency, limits["replicate_a"].per_minute) == (2, 60)
    assert limits["replicate_a"].burst == settings.replicate_create_burst
    default = (settings.replicate_max_concurrency, settings.replicate_creates_per_minute)
    assert (limits["replicate_b"].max_concurrency, limits["replicate_b"].per_minute) == default
    assert (limits["local"].max_concurrency, limits["local"].per_minute) == (1, None)
    runner_limits = provider_limits(settings, limits)
    assert runner_limits("replicate_a") is not runner_limits("replicate_b")
    assert runner_limits("replicate_a").limits.max_concurrency == 2


BAD = [
    ("models = [", "not valid TOML"),
    ("colour = 'red'", "colour: unknown key"),
    ("replicate_passthrough = 'no'", "replicate_passthrough: Input should be a valid boolean"),
    ("[providers.x]\nkind = 'dalle'", "providers.x.kind: unknown kind 'dalle'"),
    ("[providers.x]\nbase_url = 'https://a'", "providers.x.kind: required"),
    (
        "[providers.x]\nkind = 'openai'\napi_key = 'sk-secret'",
        "providers.x.api_key: keys are not read from the catalog file",
    ),
    ("[providers.x]\nkind = 'openai'\nbase_url = 'api.x.com'", "providers.x.base_url"),
    ("[providers.x]\nkind = 'openai'\napi_key_env = 'sk-123'", "providers.x.api_key_env"),
    ("[providers.replicate]\nkind = 'openai'", "providers.replicate.kind: the provider named"),
    ('[[models]]\nname = "m"\nupstream = "a/b"', "models[0].provider: required"),
    ('[[models]]\nname = "m"\nprovider = "nope"\nupstream = "a/b"', "unknown provider 'nope'"),
    ('[[models]]\nname = "a m"\nprovider = "replicate"\nupstream = "a/b"', "models[0].name"),
    ("[providers.x]\nkind = 'replicate'\nmax_concurrency = -1", "providers.x.max_concurrency"),
    ("[providers.x]\nkind = 'replicate'\ncreates_per_minute = 0", "providers.x.creates_per_min"),
    (MODEL + "max_images = 0", "models[0].max_images: Input should be greater than or equal"),
    (MODEL + "max_images = '4'", "models[0].max_images: Input should be a valid integer"),
    (MODEL + "defaults = { width = 512 }", "models[0].defaults: give both width and height"),
    (MODEL + "defaults = { width = 9000, height = 512 }", "models[0].defaults.width: must be"),
    (MODEL + "defaults = { steps = 4 }", "models[0].defaults.steps: unknown key"),
    (MODEL + "defaults = { response_format = 'png' }", "models[0].defaults.response_format"),
    (MODEL + "aliases = ['x']\n" + MODEL.replace('"m"', '"x"'), "models[1].name: 'x' is already"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_a_bad_file_names_the_file_and_the_key(
    tmp_path: Path, settings: Settings, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as info:
        load_catalog_file(path, settings)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_every_problem_is_reported_at_once(tmp_path: Path, settings: Settings) -> None:
    text = '[[models]]\nname = "a"\n\n[[models]]\nname = "b"\nprovider = "replicate"'
    with pytest.raises(ConfigurationError) as info:
        load_catalog_file(write(tmp_path, text), settings)
    message = str(info.value)
    for key in ("models[0].provider", "models[0].upstream", "models[1].upstream"):
        assert f"{key}: required" in message


@pytest.mark.parametrize(
    ("name", "expected"), [("missing.toml", "cannot be read"), ("catalog.yaml", "only TOML")]
)
def test_unreadable_or_yaml_files_are_refused(
    tmp_path: Path, settings: Settings, name: str, expected: str
) -> None:
    path = tmp_path / name
    if name.endswith(".yaml"):
        path.write_text("models: []")
    with pytest.raises(ConfigurationError, match=expected):
        load_catalog_file(path, settings)


def test_serve_stops_on_a_bad_catalog_naming_the_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[[models]]\nname = "m"\nprovider = "nope"\nupstream = "a/b"')
    result = CliRunner().invoke(
        cli, ["serve"], env={"IMAGEGEN_CATALOG": str(path), "IMAGEGEN_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert f"catalog file {path} is invalid" in result.output
    assert "models[0].provider: unknown provider 'nope'" in result.output
