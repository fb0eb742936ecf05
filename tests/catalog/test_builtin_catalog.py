"""The built-in catalog: short names for popular Replicate models with no catalog file, which a
file extends (a file model replaces the built-in one it shares a name with) or drops."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fakes.replicate_models import (
    FLUX_PRO_REF,
    FLUX_SCHNELL_REF,
    IMAGEN_REF,
    SDXL_LIGHTNING_REF,
    SDXL_REF,
)

from imagegen.catalog import REPLICATE_REF, Catalog
from imagegen.catalog_file import builtin_models, load_catalog_file
from imagegen.config import Settings
from imagegen.errors import ModelNotFound
from imagegen.models import GenerationRequest, PendingCreate, ProviderResult
from imagegen.providers.base import GenerationContext, Provider


class NamedProvider:
    """Only its name matters here: the catalog never calls a provider while resolving."""

    def __init__(self, name: str) -> None:
        self.name = name

    def first_creates(self, request: GenerationRequest) -> tuple[PendingCreate, ...]:
        return ()  # announces no creates

    async def generate(
        self, request: GenerationRequest, context: GenerationContext
    ) -> ProviderResult:
        raise AssertionError("not called")


def catalog_for(tmp_path: Path, text: str | None) -> Catalog:
    path = None
    if text is not None:
        path = tmp_path / "catalog.toml"
        path.write_text(text)
    loaded = load_catalog_file(path, Settings(_env_file=None))  # type: ignore[call-arg]
    providers: dict[str, Provider] = {
        name: NamedProvider(name)  # type: ignore[misc]
        for name in loaded.provider_entries()
    }
    return loaded.to_catalog(providers)


@pytest.mark.parametrize(
    ("name", "upstream"),
    [
        ("flux", FLUX_SCHNELL_REF),
        ("flux-schnell", FLUX_SCHNELL_REF),
        ("flux-dev", "black-forest-labs/flux-dev"),
        ("flux-pro", FLUX_PRO_REF),
        ("flux-1.1-pro", FLUX_PRO_REF),
        ("sdxl", SDXL_REF),
        ("sdxl-lightning", SDXL_LIGHTNING_REF),
        ("imagen-4", IMAGEN_REF),
        ("ideogram", "ideogram-ai/ideogram-v3-turbo"),
        ("recraft", "recraft-ai/recraft-v3"),
    ],
)
def test_short_names_route_to_replicate_without_a_catalog_file(
    tmp_path: Path, name: str, upstream: str
) -> None:
    route = catalog_for(tmp_path, None).resolve(name)
    assert route.upstream_model == upstream
    assert route.provider.name == "replicate"


def test_every_built_in_model_is_a_replicate_reference_with_unique_names() -> None:
    names = [name for model in builtin_models() for name in (model.name, *model.aliases)]
    assert len(names) == len(set(names))
    for model in builtin_models():
        assert model.provider == "replicate"
        assert REPLICATE_REF.match(model.upstream), model.upstream


def test_a_catalog_file_extends_the_built_in_models(tmp_path: Path) -> None:
    catalog = catalog_for(
        tmp_path,
        '[[models]]\nname = "mine"\nprovider = "replicate"\nupstream = "me/my-model"\n',
    )
    assert catalog.resolve("mine").upstream_model == "me/my-model"
    assert catalog.resolve("flux").upstream_model == FLUX_SCHNELL_REF
    assert catalog.resolve("someone/else").upstream_model == "someone/else"  # passthrough


def test_a_file_model_replaces_the_built_in_model_it_shares_any_name_with(
    tmp_path: Path,
) -> None:
    catalog = catalog_for(
        tmp_path,
        '[providers.together]\nkind = "openai"\nbase_url = "https://api.together.xyz"\n'
        '[[models]]\nname = "my-sdxl"\naliases = ["stable-diffusion-xl"]\n'
        'provider = "together"\nupstream = "stabilityai/stable-diffusion-xl-base-1.0"\n',
    )
    assert catalog.resolve("stable-diffusion-xl").provider.name == "together"
    with pytest.raises(ModelNotFound):
        catalog.resolve("sdxl")  # the built-in sdxl went with its alias
    assert "sdxl" not in [route.public_model for route in catalog.routes()]
    assert catalog.resolve("flux").upstream_model == FLUX_SCHNELL_REF


def test_builtin_models_false_serves_only_the_files_models(tmp_path: Path) -> None:
    catalog = catalog_for(
        tmp_path,
        'builtin_models = false\n[[models]]\nname = "mine"\nprovider = "replicate"\n'
        'upstream = "me/my-model"\n',
    )
    assert [route.public_model for route in catalog.routes()] == ["mine"]
    with pytest.raises(ModelNotFound):
        catalog.resolve("flux")
