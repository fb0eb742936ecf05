"""Routing by the catalog: names, aliases, passthrough, limits, and the provider registry."""

from __future__ import annotations

import pytest
from tests.fakes.scripted_provider import ScriptedProvider

from imagegen.catalog import MAX_PASSTHROUGH_ROUTES, Catalog, LimitedProvider, ModelDefaults, Route
from imagegen.errors import ConfigurationError, InvalidRequest, ModelNotFound
from imagegen.models import GenerationRequest
from imagegen.providers.base import GenerationContext
from imagegen.providers.registry import KINDS, ProviderSpec, build_provider

REPLICATE = ScriptedProvider(name="replicate")
OPENAI = ScriptedProvider(name="openai")
FLUX = Route(
    public_model="flux",
    provider=REPLICATE,
    upstream_model="black-forest-labs/flux-schnell",
    aliases=("flux-schnell", "fast"),
    defaults=ModelDefaults(width=512, height=512),
    max_images=2,
)
DALL_E = Route(public_model="dall-e-3", provider=OPENAI, upstream_model="dall-e-3")


def catalog(*, passthrough: bool = True) -> Catalog:
    return Catalog.of([FLUX, DALL_E], default=REPLICATE if passthrough else None)


def test_names_and_aliases_resolve_to_one_route() -> None:
    served = catalog()
    route = served.resolve("flux")
    assert served.resolve("flux-schnell") is route
    assert served.resolve("fast") is route
    assert (route.upstream_model, route.defaults.size) == (
        "black-forest-labs/flux-schnell",
        (512, 512),
    )
    assert catalog().resolve("dall-e-3").provider is OPENAI
    assert [r.public_model for r in catalog().routes()] == ["dall-e-3", "flux"]
    assert catalog().names() == ["dall-e-3", "fast", "flux", "flux-schnell"]


def test_replicate_references_pass_through_unless_turned_off() -> None:
    route = catalog().resolve("stability-ai/sdxl")
    assert (route.provider, route.upstream_model) == (REPLICATE, "stability-ai/sdxl")
    assert catalog().passthrough
    assert not catalog(passthrough=False).passthrough
    with pytest.raises(ModelNotFound, match="'stability-ai/sdxl'"):
        catalog(passthrough=False).resolve("stability-ai/sdxl")


def test_a_passthrough_route_is_made_once_per_name_up_to_a_bound() -> None:
    served = catalog()
    first = served.resolve("stability-ai/sdxl")
    assert served.resolve("stability-ai/sdxl") is first
    many = [f"owner/model-{i}" for i in range(MAX_PASSTHROUGH_ROUTES + 5)]
    routes = [served.resolve(name) for name in many]
    assert [route.upstream_model for route in routes] == many
    assert served.resolve(many[-1]) is not routes[-1]  # past the bound: made again, not kept
    assert served.resolve(many[0]) is routes[0]


@pytest.mark.parametrize("name", ["dall-e-9", "gpt-image-1", "flux-pro"])
def test_unknown_names_are_model_not_found_naming_the_model(name: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        catalog().resolve(name)
    assert info.value.model == name
    assert f"'{name}'" in str(info.value)


@pytest.mark.parametrize("name", ["not a model", "a/b/c", "owner/name:nothex"])
def test_malformed_names_are_invalid_requests_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        catalog().resolve(name)
    assert info.value.field == "model"


async def test_a_limited_model_refuses_more_images_before_the_upstream_call() -> None:
    provider = ScriptedProvider()
    limited = Catalog.of([Route("m", provider, "up", max_images=2)], default=None).resolve("m")
    assert isinstance(limited.provider, LimitedProvider)
    assert limited.provider.name == provider.name
    request = GenerationRequest(model="m", prompt="p", num_images=3, width=64, height=64)
    with pytest.raises(InvalidRequest, match="num_images: model 'm' makes at most 2") as info:
        await limited.provider.generate(request, GenerationContext(deadline=1e12))
    assert info.value.field == "num_images"
    assert provider.calls == []
    with pytest.raises(InvalidRequest, match=r"^n: "):
        limited.check_images(3, field="n")
    limited.check_images(2, field="n")


def test_registry_builds_each_kind_and_refuses_unknown_ones() -> None:
    assert sorted(KINDS) == ["openai", "replicate"]
    with pytest.raises(ConfigurationError, match="provider 'x': unknown kind 'dalle'"):
        build_provider(ProviderSpec(name="x", kind="dalle"), deps=None)  # type: ignore[arg-type]
