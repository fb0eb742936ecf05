"""``Idempotency-Key`` on both create endpoints: the doubles count the upstream calls."""

from __future__ import annotations

import functools
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from tests.fakes.openai_double import Fault, OpenAIDouble
from tests.fakes.replicate_double import ReplicateDouble
from tests.openai_api.conftest import ENVIRON
from tests.openai_api.harness import settings_for

from imagegen.api.app import create_app
from imagegen.services import build_services

SEED = "/api/v1/images/generate"
OPENAI = "/v1/images/generations"
BODIES = {
    SEED: {
        "model": "dall-e-3",
        "prompt": "an otter",
        "num_images": 1,
        "width": 1024,
        "height": 1024,
    },
    OPENAI: {"model": "dall-e-3", "prompt": "an otter", "response_format": "b64_json"},
}
ENDPOINTS = pytest.mark.parametrize("path", [SEED, OPENAI])


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"test-{uuid.uuid4()}"}


def generation_id(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def error_message(response: httpx.Response) -> str:
    error = response.json()["error"]
    return str(error["message"] if isinstance(error, dict) else error)


@ENDPOINTS
def test_a_repeat_returns_the_stored_result_without_a_second_upstream_call(
    api: httpx.Client, openai_double: OpenAIDouble, path: str
) -> None:
    headers = key()
    first = api.post(path, json=BODIES[path], headers=headers)
    second = api.post(path, json=BODIES[path], headers=headers)
    assert generation_id(first) == generation_id(second)
    assert first.json() == second.json()
    assert openai_double.stats()["total_calls"] == 1
    assert api.post(path, json=BODIES[path]).status_code == 200  # no key: a new generation
    assert openai_double.stats()["total_calls"] == 2


def test_a_repeat_on_replicate_makes_one_prediction(
    api: httpx.Client, replicate: ReplicateDouble
) -> None:
    headers = key()
    body = {**BODIES[SEED], "model": "flux", "width": 512, "height": 512}
    assert generation_id(api.post(SEED, json=body, headers=headers)) == generation_id(
        api.post(SEED, json=body, headers=headers)
    )
    assert replicate.stats()["creates"]["total"] == 1


def test_the_sdk_sends_a_key_through_extra_headers(
    sdk: openai.OpenAI, openai_double: OpenAIDouble
) -> None:
    headers = key()
    results = [
        sdk.images.generate(model="dall-e-3", prompt="a fox", extra_headers=headers)
        for _ in range(3)
    ]
    assert len({result.id for result in results}) == 1  # type: ignore[attr-defined]
    assert openai_double.stats()["total_calls"] == 1


@ENDPOINTS
def test_the_same_key_with_another_body_is_422_naming_the_header(
    api: httpx.Client, openai_double: OpenAIDouble, path: str
) -> None:
    headers = key()
    generation_id(api.post(path, json=BODIES[path], headers=headers))
    response = api.post(path, json={**BODIES[path], "prompt": "a badger"}, headers=headers)
    assert response.status_code == 422
    assert "Idempotency-Key" in error_message(response)
    assert "different request" in error_message(response)
    assert openai_double.stats()["total_calls"] == 1


def test_a_key_is_bound_to_its_endpoint(api: httpx.Client, openai_double: OpenAIDouble) -> None:
    headers = key()
    generation_id(api.post(SEED, json=BODIES[SEED], headers=headers))
    response = api.post(OPENAI, json=BODIES[OPENAI], headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_conflict"


def test_the_sdk_gets_unprocessable_entity_for_a_reused_key(sdk: openai.OpenAI) -> None:
    headers = key()
    sdk.images.generate(model="dall-e-3", prompt="a fox", extra_headers=headers)
    with pytest.raises(openai.UnprocessableEntityError, match="Idempotency-Key"):
        sdk.images.generate(model="dall-e-3", prompt="a hen", extra_headers=headers)


@ENDPOINTS
def test_a_repeat_while_the_first_is_in_flight_waits_for_it(
    api: httpx.Client, openai_double: OpenAIDouble, path: str
) -> None:
    openai_double.script(Fault("slow", delay=0.8))
    headers = key()
    responses: dict[str, httpx.Response] = {}

    def first() -> None:
        responses["first"] = api.post(path, json=BODIES[path], headers=headers)

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.monotonic() + 5
    while openai_double.stats()["total_calls"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    second = api.post(path, json=BODIES[path], headers=headers)
    thread.join()
    assert time.monotonic() - started > 0.3  # it waited for the slow upstream
    assert generation_id(second) == generation_id(responses["first"])
    assert openai_double.stats()["total_calls"] == 1


def test_a_failed_generation_replays_its_error_without_a_second_call(
    api: httpx.Client, openai_double: OpenAIDouble
) -> None:
    openai_double.script(Fault("content_policy"))
    headers = key()
    first = api.post(OPENAI, json=BODIES[OPENAI], headers=headers)
    second = api.post(OPENAI, json=BODIES[OPENAI], headers=headers)
    assert first.status_code == second.status_code == 400
    assert error_message(first) == error_message(second)
    assert openai_double.stats()["total_calls"] == 1


def test_keys_expire_after_imagegen_idempotency_ttl(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    catalog_path: Path,
    openai_double: OpenAIDouble,
    replicate_double_server: ReplicateDouble,
) -> None:
    monkeypatch.setenv("IMAGEGEN_IDEMPOTENCY_TTL", "0.4")
    settings = settings_for(tmp_path, catalog_path, replicate_double_server.base_url)
    assert settings.idempotency_ttl == 0.4
    services = functools.partial(build_services, environ=ENVIRON)
    headers = key()
    with TestClient(create_app(settings, services=services)) as client:
        ids = [generation_id(client.post(OPENAI, json=BODIES[OPENAI], headers=headers))]
        ids.append(generation_id(client.post(OPENAI, json=BODIES[OPENAI], headers=headers)))
        assert openai_double.stats()["total_calls"] == 1
        time.sleep(0.5)
        other: dict[str, Any] = {**BODIES[OPENAI], "prompt": "a badger"}
        ids.append(generation_id(client.post(OPENAI, json=other, headers=headers)))
    assert ids[0] == ids[1] != ids[2]
    assert openai_double.stats()["total_calls"] == 2
