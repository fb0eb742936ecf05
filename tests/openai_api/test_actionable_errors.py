"""Errors a user can act on, over real HTTP against the doubles:

- an unknown model is a 404 naming it (``model_not_found``, ``param: "model"`` under ``/v1``) on
  both endpoints, whichever provider would have served it;
- errors a retry cannot fix say ``x-should-retry: false``, so the official SDK, with its default
  retries, pays for one prediction only; retryable ones say ``true``;
- every error under ``/v1`` is in OpenAI's envelope, ``/v1`` itself and 405s included;
- two catalog providers of kind ``replicate`` are two providers, each with its own limits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.fakes.openai_double import OpenAIDouble
from tests.fakes.replicate_double import ReplicateDouble
from tests.openai_api.conftest import ENVIRON
from tests.openai_api.harness import InProcessImagegen, catalog_toml, settings_for

DEADLINE = 3.0
SEED = "/api/v1/images/generate"
OPENAI = "/v1/images/generations"
ACCOUNT_KEYS = {"TEST_REPLICATE_A": "r8_test", "TEST_REPLICATE_B": "r8_test"}


def extra_catalog(replicate_base_url: str) -> str:
    return f"""
[providers.replicate_a]
kind = "replicate"
base_url = "{replicate_base_url}"
api_key_env = "TEST_REPLICATE_A"
max_concurrency = 1

[providers.replicate_b]
kind = "replicate"
base_url = "{replicate_base_url}"
api_key_env = "TEST_REPLICATE_B"
creates_per_minute = 6000
create_burst = 10

[[models]]
name = "ghost"
provider = "openai"
upstream = "dall-e-9"

[[models]]
name = "flux-a"
provider = "replicate_a"
upstream = "black-forest-labs/flux-schnell"

[[models]]
name = "flux-b"
provider = "replicate_b"
upstream = "black-forest-labs/flux-schnell"
"""


@pytest.fixture(scope="module")
def catalog_path(
    tmp_path_factory: pytest.TempPathFactory,
    openai_double: OpenAIDouble,
    replicate_double_server: ReplicateDouble,
) -> Path:
    path = tmp_path_factory.mktemp("catalog") / "catalog.toml"
    text = catalog_toml(openai_double.base_url) + extra_catalog(replicate_double_server.base_url)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def imagegen(
    tmp_path_factory: pytest.TempPathFactory,
    catalog_path: Path,
    replicate_double_server: ReplicateDouble,
) -> Iterator[InProcessImagegen]:
    data_dir = tmp_path_factory.mktemp("imagegen")
    settings = settings_for(
        data_dir, catalog_path, replicate_double_server.base_url, request_timeout=DEADLINE
    )
    with InProcessImagegen(settings, {**ENVIRON, **ACCOUNT_KEYS}) as server:
        yield server


def seed(model: str) -> dict[str, Any]:
    return {"model": model, "prompt": "an otter", "num_images": 1, "width": 512, "height": 512}


# --- an unknown model is a 404 naming it, on both endpoints, whoever would serve it ---------------

UNKNOWN = {
    "catalog-miss": "no-such-model",
    "replicate-404": "nobody/no-such-model",
    "openai-compatible-404": "ghost",
}


@pytest.mark.parametrize("model", UNKNOWN.values(), ids=UNKNOWN.keys())
def test_an_unknown_model_is_404_naming_it_on_both_endpoints(
    api: httpx.Client, replicate: ReplicateDouble, model: str
) -> None:
    seeded = api.post(SEED, json=seed(model))
    assert seeded.status_code == 404, seeded.text
    assert f"'{model}'" in seeded.json()["error"]
    assert seeded.headers["x-should-retry"] == "false"

    reply = api.post(OPENAI, json={"model": model, "prompt": "an otter"})
    assert reply.status_code == 404, reply.text
    error = reply.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (
        "model_not_found",
        "model",
        "invalid_request_error",
    )
    assert f"'{model}'" in error["message"]
    assert replicate.stats()["creates"]["total"] == 0


def test_the_sdk_sees_not_found_for_an_upstream_404(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        sdk.images.generate(model="nobody/no-such-model", prompt="an otter")
    assert (info.value.code, info.value.param) == ("model_not_found", "model")


# --- x-should-retry: the SDK's default retries never pay twice ------------------------------------


@pytest.fixture
def retrying_sdk(imagegen: InProcessImagegen) -> openai.OpenAI:
    """The official SDK as users run it: default retries (2), default backoff."""
    return openai.OpenAI(base_url=f"{imagegen.base_url}/v1", api_key="anything")


def test_a_passed_deadline_is_not_retried_by_the_sdk(
    retrying_sdk: openai.OpenAI, replicate: ReplicateDouble
) -> None:
    replicate.script("never_finish", times=5)
    with pytest.raises(openai.InternalServerError) as info:
        retrying_sdk.images.generate(model="flux", prompt="an otter")
    assert info.value.status_code == 504
    assert replicate.stats()["creates"]["total"] == 1  # the SDK did not try again
    assert info.value.response.headers["x-should-retry"] == "false"


def test_a_failed_model_is_not_retried_by_the_sdk(
    retrying_sdk: openai.OpenAI, replicate: ReplicateDouble
) -> None:
    replicate.script("fail_prediction", error="CUDA out of memory", times=5)
    with pytest.raises(openai.InternalServerError) as info:
        retrying_sdk.images.generate(model="flux", prompt="an otter")
    assert info.value.status_code == 502
    assert replicate.stats()["creates"]["total"] == 1  # the SDK did not try again
    assert info.value.response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model": "flux", "prompt": ""}, 400),
        ({"model": "ibm-granite/granite-3.0-8b-instruct", "prompt": "a poem"}, 422),
        ({"model": "nope", "prompt": "x"}, 404),
    ],
)
def test_client_errors_say_do_not_retry(
    api: httpx.Client, body: dict[str, Any], status: int
) -> None:
    reply = api.post(OPENAI, json=body)
    assert reply.status_code == status, reply.text
    assert reply.headers["x-should-retry"] == "false"


# --- every error under /v1 in OpenAI's envelope ---------------------------------------------------


def assert_openai_envelope(reply: httpx.Response, status: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"
    assert reply.headers["x-should-retry"] == "false"
    return dict(body["error"])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1", 404),
        ("POST", "/v1", 404),
        ("GET", "/v1/", 404),
        ("GET", "/v1/no/such/path", 404),
        ("GET", "/v1/images/generations", 405),
        ("DELETE", "/v1/images/generations", 405),
        ("POST", "/v1/models", 405),
    ],
)
def test_every_error_under_v1_is_in_openais_envelope(
    api: httpx.Client, method: str, path: str, status: int
) -> None:
    error = assert_openai_envelope(api.request(method, path), status)
    if status == 405:
        assert method in error["message"] or "Not Allowed" in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", SEED, 405), ("GET", "/api/v1/nope", 404), ("GET", "/v1x", 404)],
)
def test_other_paths_keep_the_seed_error_shape(
    api: httpx.Client, method: str, path: str, status: int
) -> None:
    reply = api.request(method, path)
    assert reply.status_code == status
    assert isinstance(reply.json()["error"], str)


# --- two Replicate accounts are two providers -----------------------------------------------------


def test_two_replicate_providers_have_their_own_names(api: httpx.Client) -> None:
    listed = {m["id"]: m["provider"] for m in api.get("/api/v1/models").json()["data"]}
    assert (listed["flux-a"], listed["flux-b"], listed["flux"]) == (
        "replicate_a",
        "replicate_b",
        "replicate",
    )


def wait_for(api: httpx.Client, generation_id: str, statuses: set[str]) -> dict[str, Any]:
    stop = time.monotonic() + 20
    while True:
        job: dict[str, Any] = api.get(f"/api/v1/generations/{generation_id}").json()
        if job["status"] in statuses or time.monotonic() > stop:
            return job
        time.sleep(0.05)


def test_two_replicate_providers_have_their_own_limits(
    api: httpx.Client, replicate: ReplicateDouble
) -> None:
    # replicate_a runs one generation at a time; replicate_b has limits of its own.
    replicate.script("never_finish")
    later = {"Prefer": "respond-async"}
    first = api.post(SEED, json=seed("flux-a"), headers=later).json()["id"]
    assert wait_for(api, first, {"running"})["status"] == "running"
    second = api.post(SEED, json=seed("flux-a"), headers=later).json()["id"]

    other = api.post(SEED, json=seed("flux-b"))  # not behind replicate_a's busy slot
    assert other.status_code == 200, other.text
    assert api.get(f"/api/v1/generations/{second}").json()["status"] == "queued"

    api.post(f"/api/v1/generations/{first}/cancel")
    assert wait_for(api, second, {"succeeded", "failed"})["status"] == "succeeded"
