"""Both endpoints reach both upstreams, chosen by the catalog; limits, models, empty results."""

from __future__ import annotations

import functools
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.fakes.openai_double import Fault, OpenAIDouble
from tests.fakes.replicate_double import ReplicateDouble
from tests.openai_api.conftest import ENVIRON
from tests.openai_api.harness import InProcessImagegen, settings_for

from imagegen.api.app import create_app
from imagegen.services import build_services

SEED = "/api/v1/images/generate"
OPENAI = "/v1/images/generations"


def seed_body(model: str) -> dict[str, object]:
    return {"model": model, "prompt": "a harbour", "num_images": 1, "width": 512, "height": 512}


def test_seed_endpoint_reaches_an_openai_compatible_upstream(
    api: httpx.Client, imagegen: InProcessImagegen, openai_double: OpenAIDouble
) -> None:
    response = api.post(SEED, json={**seed_body("dall-e-3"), "num_images": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "dall-e-3"
    assert len(body["image_urls"]) == 2  # dall-e-3 makes one per request: two requests
    for url in body["image_urls"]:
        assert url.startswith(f"{imagegen.base_url}/images/")
        assert api.get(url).status_code == 200
    assert [image["width"] for image in body["images"]] == [1024, 1024]  # nearest dall-e-3 size
    assert openai_double.stats()["calls"] == {"dall-e-3": 2}
    history = api.get(f"/api/v1/generations/{body['id']}").json()
    assert (history["provider"], history["status"]) == ("openai", "succeeded")


def test_seed_endpoint_alias_sends_the_upstream_name_and_extensions(
    api: httpx.Client, openai_double: OpenAIDouble
) -> None:
    body = {**seed_body("stable-diffusion-xl"), "seed": 7, "negative_prompt": "fog"}
    response = api.post(SEED, json=body)
    assert response.status_code == 200, response.text
    sent = openai_double.stats()["requests"][0]
    assert sent["model"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert (sent["size"], sent["seed"], sent["negative_prompt"]) == ("512x512", 7, "fog")


def test_seed_endpoint_catalog_name_goes_to_replicate_as_the_upstream_model(
    api: httpx.Client, replicate: ReplicateDouble
) -> None:
    response = api.post(SEED, json=seed_body("flux-schnell"))
    assert response.status_code == 200, response.text
    assert replicate.stats()["creates"]["by_model"] == {"black-forest-labs/flux-schnell": 1}


def test_openai_endpoint_without_model_uses_the_default_model_on_replicate(
    api: httpx.Client, replicate: ReplicateDouble
) -> None:
    response = api.post(OPENAI, json={"prompt": "a city", "size": "512x512"})
    assert response.status_code == 200, response.text
    assert replicate.stats()["creates"]["by_model"] == {"black-forest-labs/flux-schnell": 1}
    assert response.json()["data"][0]["url"].endswith((".webp", ".png", ".jpg"))


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (OPENAI, {"model": "flux", "prompt": "x", "n": 5}, "n"),
        (SEED, {**seed_body("flux"), "num_images": 5}, "num_images"),
    ],
)
def test_a_models_image_limit_is_a_400_naming_the_field(
    api: httpx.Client, replicate: ReplicateDouble, path: str, body: dict[str, object], field: str
) -> None:
    response = api.post(path, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    message = error["message"] if isinstance(error, dict) else error
    assert message.startswith(f"{field}: model 'flux' makes at most 4 images")
    assert replicate.stats()["creates"]["total"] == 0


def test_an_empty_upstream_result_on_the_seed_endpoint_is_502(
    api: httpx.Client, openai_double: OpenAIDouble
) -> None:
    openai_double.script(Fault("empty"))
    response = api.post(SEED, json=seed_body("dall-e-3"))
    assert response.status_code == 502
    assert "no images" in response.json()["error"]


def test_async_creation_is_202_with_the_generation_and_its_location(
    api: httpx.Client, openai_double: OpenAIDouble
) -> None:
    response = api.post(
        OPENAI, json={"model": "dall-e-3", "prompt": "x"}, headers={"Prefer": "respond-async"}
    )
    assert response.status_code == 202
    generation = response.json()
    assert response.headers["location"].endswith(f"/api/v1/generations/{generation['id']}")
    assert generation["status"] in ("queued", "running", "succeeded")


def test_catalog_models_are_listed_with_their_routes(api: httpx.Client) -> None:
    body = api.get("/api/v1/models").json()
    assert body["replicate_passthrough"] is True
    assert body["default_model"] == "black-forest-labs/flux-schnell"
    flux = next(model for model in body["data"] if model["id"] == "flux")
    assert flux == {
        "id": "flux",
        "aliases": ["flux-schnell"],
        "provider": "replicate",
        "upstream": "black-forest-labs/flux-schnell",
        "default_width": 512,
        "default_height": 512,
        "max_images": 4,
    }


@pytest.mark.parametrize(
    ("model", "owner"),
    [
        ("dall-e-3", "openai"),
        ("stable-diffusion-xl", "openai"),
        ("someone/some-model", "replicate"),
    ],
)
def test_a_served_model_is_retrieved(api: httpx.Client, model: str, owner: str) -> None:
    response = api.get(f"/v1/models/{model}")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": model, "object": "model", "created": 0, "owned_by": owner}


@pytest.mark.parametrize(
    "model", ["no-such-model", "not a model", "owner/name:nothex", "a/b/c", "-x", "owner/name "]
)
def test_an_unknown_or_malformed_model_is_404_model_not_found(
    api: httpx.Client, model: str
) -> None:
    response = api.get(f"/v1/models/{model}")
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "model"
    assert model in error["message"]


def test_without_passthrough_replicate_references_are_404(
    tmp_path: Path, replicate_double_server: ReplicateDouble
) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        "replicate_passthrough = false\nbuiltin_models = false\n"
        '[[models]]\nname = "flux"\nprovider = "replicate"\n'
        'upstream = "black-forest-labs/flux-schnell"\n'
    )
    settings = settings_for(
        tmp_path, catalog, replicate_double_server.base_url, default_model="flux"
    )
    services = functools.partial(build_services, environ=ENVIRON)
    with TestClient(create_app(settings, services=services)) as client:
        response = client.post(SEED, json=seed_body("black-forest-labs/flux-schnell"))
        assert response.status_code == 404
        assert "black-forest-labs/flux-schnell" in response.json()["error"]
        listed = [model["id"] for model in client.get("/v1/models").json()["data"]]
        assert listed == ["flux"]


def test_openai_options_are_recorded_on_the_generation(api: httpx.Client) -> None:
    response = api.post(
        OPENAI,
        json={
            "prompt": "a kite",
            "model": "dall-e-3",
            "quality": "hd",
            "style": "vivid",
            "user": "u1",
        },
    )
    assert response.status_code == 200, response.text
    history = api.get(f"/api/v1/generations/{response.json()['id']}").json()
    assert history["metadata"]["endpoint"] == "openai"
    assert history["metadata"]["openai_options"] == {
        "quality": "hd",
        "style": "vivid",
        "user": "u1",
    }
