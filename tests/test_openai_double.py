"""Fidelity of the OpenAI double: the official ``openai`` SDK must work against it unchanged."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from tests.fakes.openai_double import Fault, OpenAIDouble
from tests.fakes.openai_fixtures import API_KEY, double_fixtures

openai_double, _reset_openai_double = double_fixtures()

FREE_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def client(openai_double: OpenAIDouble) -> openai.OpenAI:
    return openai.OpenAI(base_url=openai_double.base_url + "/v1", api_key=API_KEY, max_retries=0)


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_dall_e_2_urls_serve_decodable_images_at_the_requested_size(
    client: openai.OpenAI,
) -> None:
    result = client.images.generate(
        model="dall-e-2", prompt="an otter", n=2, size="512x512", response_format="url"
    )
    assert isinstance(result.created, int)
    assert result.data is not None
    assert len(result.data) == 2
    for item in result.data:
        assert item.url is not None
        assert item.b64_json is None
        image = _decode(httpx.get(item.url).raise_for_status().content)
        assert (image.format, image.size) == ("PNG", (512, 512))


def test_dall_e_3_b64_with_revised_prompt(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="dall-e-3", prompt="an otter", size="1792x1024", response_format="b64_json"
    )
    assert result.data is not None
    assert len(result.data) == 1
    item = result.data[0]
    assert item.b64_json is not None
    assert item.revised_prompt
    assert _decode(base64.b64decode(item.b64_json)).size == (1792, 1024)


def test_gpt_image_returns_b64_in_the_asked_format_with_usage(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="gpt-image-1", prompt="an otter", size="1536x1024", output_format="jpeg", n=2
    )
    assert result.data is not None
    assert len(result.data) == 2
    assert all(item.url is None for item in result.data)
    image = _decode(base64.b64decode(result.data[0].b64_json or ""))
    assert (image.format, image.size) == ("JPEG", (1536, 1024))
    assert result.usage is not None
    assert result.usage.total_tokens > 0
    assert (result.output_format, result.size) == ("jpeg", "1536x1024")


def test_gpt_image_rejects_response_format_like_openai(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="gpt-image-1", prompt="x", response_format="url")
    assert info.value.message == "Error code: 400 - Unknown parameter: 'response_format'."
    assert info.value.code == "unknown_parameter"
    assert info.value.param == "response_format"


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        ("dall-e-3", {"n": 2}),
        ("dall-e-3", {"size": "512x512"}),
        ("dall-e-2", {"n": 11}),
        ("dall-e-2", {"size": "1792x1024"}),
        ("dall-e-2", {"response_format": "png"}),
        ("dall-e-2", {"extra_body": {"seed": 1}}),
        ("dall-e-3", {"quality": "low"}),
        ("dall-e-2", {"style": "vivid"}),
        ("gpt-image-1", {"size": "1792x1024"}),
        ("gpt-image-1", {"output_format": "gif"}),
        ("gpt-image-1", {"background": "transparent", "output_format": "jpeg"}),
        (FREE_MODEL, {"size": "1000x512"}),
        (FREE_MODEL, {"size": "4096x512"}),
    ],
)
def test_invalid_parameters_are_rejected_per_model(
    client: openai.OpenAI, model: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model=model, prompt="an otter", **kwargs)
    assert info.value.body is not None


def test_free_size_model_accepts_any_multiple_of_64_and_extras(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model=FREE_MODEL,
        prompt="an otter",
        size="640x384",
        response_format="b64_json",
        extra_body={"seed": 7, "negative_prompt": "blurry"},
    )
    assert result.data is not None
    assert _decode(base64.b64decode(result.data[0].b64_json or "")).size == (640, 384)


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.images.generate(model="dall-e-9", prompt="x")
    assert info.value.code == "model_not_found"


def test_wrong_key_is_authentication_error_with_openai_envelope(
    openai_double: OpenAIDouble,
) -> None:
    bad = openai.OpenAI(
        base_url=openai_double.base_url + "/v1", api_key="sk-wrong-key-123456", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as info:
        bad.images.generate(model="dall-e-2", prompt="x")
    assert info.value.code == "invalid_api_key"
    assert info.value.type == "invalid_request_error"
    assert "Incorrect API key provided: sk-*" in info.value.message
    assert "sk-wrong-key-123456" not in info.value.message
    assert (info.value.request_id or "").startswith("req_")


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        (Fault("content_policy"), openai.BadRequestError, "content_policy_violation"),
        (Fault("rate_limit", retry_after=3), openai.RateLimitError, "rate_limit_exceeded"),
        (Fault("server_error"), openai.InternalServerError, None),
        (Fault("server_error", status=503), openai.InternalServerError, None),
    ],
)
def test_scripted_faults_raise_the_sdk_exceptions(
    openai_double: OpenAIDouble,
    client: openai.OpenAI,
    fault: Fault,
    error: type[openai.APIStatusError],
    code: str | None,
) -> None:
    openai_double.script(fault)
    with pytest.raises(error) as info:
        client.images.generate(model="dall-e-3", prompt="x")
    assert info.value.code == code
    if fault.retry_after is not None:
        assert info.value.response.headers["retry-after"] == "3"
    client.images.generate(model="dall-e-3", prompt="x")  # one-shot: the next call succeeds


def test_faults_can_target_a_model_and_repeat(openai_double: OpenAIDouble) -> None:
    openai_double.script(Fault("server_error", model="dall-e-3", times=2))
    sdk = openai.OpenAI(base_url=openai_double.base_url + "/v1", api_key=API_KEY, max_retries=0)
    sdk.images.generate(model="dall-e-2", prompt="x")
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            sdk.images.generate(model="dall-e-3", prompt="x")
    sdk.images.generate(model="dall-e-3", prompt="x")
    assert openai_double.stats()["calls"] == {"dall-e-2": 1, "dall-e-3": 3}


def test_slow_reply_times_the_sdk_out(openai_double: OpenAIDouble) -> None:
    openai_double.script(Fault("slow", delay=0.5))
    sdk = openai.OpenAI(
        base_url=openai_double.base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=0.1
    )
    with pytest.raises(openai.APITimeoutError):
        sdk.images.generate(model="dall-e-2", prompt="x")


@pytest.mark.parametrize("kind", ["empty", "malformed"])
def test_empty_and_malformed_replies_over_raw_http(openai_double: OpenAIDouble, kind: str) -> None:
    openai_double.script(Fault(kind))
    response = httpx.post(
        openai_double.base_url + "/v1/images/generations",
        json={"model": "dall-e-2", "prompt": "x"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 200
    if kind == "empty":
        assert response.json()["data"] == []
    else:
        with pytest.raises(ValueError):
            response.json()


def test_standard_headers_and_models_list(
    openai_double: OpenAIDouble, client: openai.OpenAI
) -> None:
    assert {m.id for m in client.models.list()} >= {"dall-e-2", "dall-e-3", "gpt-image-1"}
    raw = client.images.with_raw_response.generate(model="dall-e-2", prompt="x")
    for header in ("x-request-id", "openai-processing-ms", "x-ratelimit-remaining-requests"):
        assert header in raw.headers


def test_stats_record_bodies_and_reset_clears_them(
    openai_double: OpenAIDouble, client: openai.OpenAI
) -> None:
    client.images.generate(model="gpt-image-1", prompt="x", quality="low")
    stats = openai_double.stats()
    assert stats["calls"] == {"gpt-image-1": 1}
    assert stats["requests"][0]["quality"] == "low"
    openai_double.reset()
    assert openai_double.stats()["total_calls"] == 0


def test_urls_expire() -> None:
    with OpenAIDouble(api_key=None, url_ttl=0.2) as double:
        sdk = openai.OpenAI(base_url=double.base_url + "/v1", api_key="unused", max_retries=0)
        result = sdk.images.generate(model="dall-e-2", prompt="x", size="256x256")
        assert result.data is not None
        assert result.data[0].url is not None
        assert httpx.get(result.data[0].url).status_code == 200
        time.sleep(0.25)
        assert httpx.get(result.data[0].url).status_code == 403


def test_runs_as_a_process() -> None:
    command = [sys.executable, "-m", "tests.fakes.openai_double", "--port", "0"]
    process = subprocess.Popen(
        [*command, "--api-key", "sk-proc"], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:")
        base_url = line.removeprefix("READY ")
        sdk = openai.OpenAI(base_url=base_url + "/v1", api_key="sk-proc", max_retries=0)
        result = sdk.images.generate(model="dall-e-2", prompt="x", response_format="b64_json")
        assert result.data is not None
        assert result.data[0].b64_json
    finally:
        process.terminate()
        process.wait(timeout=10)
