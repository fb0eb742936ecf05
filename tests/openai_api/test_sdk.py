"""The official ``openai`` SDK against imagegen: both response formats, typed errors, models."""

from __future__ import annotations

import base64
import io
from typing import Literal

import httpx
import openai
import pytest
from PIL import Image
from tests.fakes.openai_double import Fault, OpenAIDouble
from tests.fakes.replicate_double import ReplicateDouble
from tests.openai_api.harness import InProcessImagegen


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_url_images_are_durable_imagegen_urls(
    sdk: openai.OpenAI, imagegen: InProcessImagegen, openai_double: OpenAIDouble
) -> None:
    result = sdk.images.generate(
        model="dall-e-3", prompt="an otter", size="1792x1024", response_format="url"
    )
    assert result.data is not None
    assert len(result.data) == 1
    item = result.data[0]
    assert item.b64_json is None
    assert item.url is not None
    assert item.url.startswith(f"{imagegen.base_url}/images/")
    assert decode(httpx.get(item.url).raise_for_status().content).size == (1792, 1024)
    assert isinstance(result.created, int)
    generation = httpx.get(f"{imagegen.base_url}/api/v1/generations/{result.id}").json()  # type: ignore[attr-defined]
    assert generation["status"] == "succeeded"
    assert openai_double.stats()["calls"] == {"dall-e-3": 1}


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_dall_e_3_revised_prompt_reaches_the_sdk(
    sdk: openai.OpenAI, api: httpx.Client, response_format: Literal["url", "b64_json"]
) -> None:
    result = sdk.images.generate(
        model="dall-e-3", prompt="an otter", size="1024x1024", response_format=response_format
    )
    assert result.data is not None
    expected = "A detailed, vivid illustration of: an otter"
    assert result.data[0].revised_prompt == expected
    generation = api.get(f"/api/v1/generations/{result.id}").json()  # type: ignore[attr-defined]
    assert generation["images"][0]["revised_prompt"] == expected


def test_no_revised_prompt_key_when_the_upstream_gives_none(api: httpx.Client) -> None:
    body = {"model": "sdxl", "prompt": "an otter", "size": "256x256"}
    reply = api.post("/v1/images/generations", json=body).raise_for_status().json()
    assert "revised_prompt" not in reply["data"][0]


def test_b64_json_images_decode_at_the_requested_size(sdk: openai.OpenAI) -> None:
    result = sdk.images.generate(
        model="sdxl", prompt="a lighthouse", n=3, size="640x384", response_format="b64_json"
    )
    assert result.data is not None
    assert len(result.data) == 3
    for item in result.data:
        assert item.url is None
        assert item.b64_json is not None
        image = decode(base64.b64decode(item.b64_json))
        assert (image.format, image.size) == ("PNG", (640, 384))


def test_a_model_defaulting_to_b64_json_answers_in_base64(sdk: openai.OpenAI) -> None:
    result = sdk.images.generate(model="gpt-image-1", prompt="a fox", output_format="jpeg")
    assert result.data is not None
    assert result.data[0].b64_json is not None
    assert decode(base64.b64decode(result.data[0].b64_json)).format == "JPEG"


def test_replicate_through_the_openai_endpoint(
    sdk: openai.OpenAI, replicate: ReplicateDouble
) -> None:
    result = sdk.images.generate(model="flux", prompt="a city", n=2, response_format="b64_json")
    assert result.data is not None
    assert len(result.data) == 2
    for item in result.data:
        assert item.b64_json is not None
        assert decode(base64.b64decode(item.b64_json)).size == (512, 512)  # the catalog default
    assert replicate.stats()["creates"]["total"] == 1


def test_seed_and_negative_prompt_ride_in_extra_body(
    sdk: openai.OpenAI, openai_double: OpenAIDouble
) -> None:
    sdk.images.generate(
        model="stable-diffusion-xl",
        prompt="a harbour",
        size="512x512",
        extra_body={"seed": 42, "negative_prompt": "fog"},
    )
    sent = openai_double.stats()["requests"][0]
    assert sent["model"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert (sent["seed"], sent["negative_prompt"]) == (42, "fog")


def test_models_list_and_retrieve(sdk: openai.OpenAI) -> None:
    listed = {model.id: model.owned_by for model in sdk.models.list()}
    assert listed["flux"] == "replicate"
    assert listed["dall-e-3"] == "openai"
    assert listed["stale-dall-e-2"] == "stale"
    assert "black-forest-labs/flux-schnell" in listed  # the default model, by passthrough
    assert "flux-schnell" not in listed  # aliases are not listed separately
    assert sdk.models.retrieve("flux-schnell").owned_by == "replicate"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("dall-e-9")


# ---- typed errors --------------------------------------------------------------------------


def test_wrong_upstream_key_is_authentication_error(
    sdk: openai.OpenAI, openai_double: OpenAIDouble
) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        sdk.images.generate(model="stale-dall-e-2", prompt="an otter")
    assert info.value.code == "invalid_api_key"
    assert "Incorrect API key" in info.value.message
    assert info.value.request_id is not None
    assert info.value.request_id.startswith("req_")


@pytest.mark.parametrize("size", ["big", "10x10", "1024x99999", "1024 x 1024"])
def test_bad_size_is_bad_request_naming_size(sdk: openai.OpenAI, size: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk.images.generate(model="dall-e-3", prompt="an otter", size=size)  # type: ignore[arg-type]
    assert info.value.param == "size"
    assert info.value.type == "invalid_request_error"


def test_content_policy_is_bad_request_with_openais_code(
    sdk: openai.OpenAI, openai_double: OpenAIDouble
) -> None:
    openai_double.script(Fault("content_policy"))
    with pytest.raises(openai.BadRequestError) as info:
        sdk.images.generate(model="dall-e-3", prompt="something forbidden")
    assert info.value.code == "content_policy_violation"
    assert "safety system" in info.value.message


def test_unknown_model_is_not_found_naming_it(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        sdk.images.generate(model="dall-e-9", prompt="an otter")
    assert "dall-e-9" in info.value.message
    assert (info.value.param, info.value.code) == ("model", "model_not_found")


def test_text_model_is_unprocessable(sdk: openai.OpenAI, replicate: ReplicateDouble) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        sdk.images.generate(model="ibm-granite/granite-3.0-8b-instruct", prompt="a poem")
    assert "granite" in info.value.message
    assert replicate.stats()["creates"]["total"] == 0


def test_upstream_rate_limit_is_rate_limit_error_with_retry_after(
    sdk: openai.OpenAI, openai_double: OpenAIDouble
) -> None:
    openai_double.script(Fault("rate_limit", retry_after=90))  # longer than the deadline
    with pytest.raises(openai.RateLimitError) as info:
        sdk.images.generate(model="dall-e-3", prompt="an otter")
    # clamped to IMAGEGEN_UPSTREAM_MAX_RETRY_AFTER (60 s), and worth retrying after it
    assert info.value.response.headers["retry-after"] == "60"
    assert info.value.response.headers["x-should-retry"] == "true"
    assert info.value.code == "rate_limit_exceeded"
    assert openai_double.stats()["total_calls"] == 1


@pytest.mark.parametrize("kind", ["server_error", "empty", "malformed"])
def test_upstream_failures_are_5xx_never_an_empty_200(
    sdk: openai.OpenAI, openai_double: OpenAIDouble, kind: str
) -> None:
    openai_double.script(Fault(kind))
    with pytest.raises(openai.InternalServerError) as info:
        sdk.images.generate(model="dall-e-3", prompt="an otter")
    assert info.value.status_code == 502
    assert info.value.type == "server_error"


def test_every_response_has_a_request_id(api: httpx.Client) -> None:
    ok = api.get("/v1/models")
    failed = api.post("/v1/images/generations", json={"prompt": "x", "model": "nope"})
    assert ok.headers["x-request-id"] != failed.headers["x-request-id"]
    assert failed.json()["error"]["code"] == "model_not_found"
