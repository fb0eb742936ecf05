"""The OpenAPI description documents what imagegen really answers: 400 (not FastAPI's 422) for a
request that fails validation, with the route's own error model, and the settings' bounds."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.fakes.scripted_provider import ScriptedProvider

from imagegen.api.app import create_app
from imagegen.api.deps import Services
from imagegen.api.openai_schemas import ImageGenerationRequest
from imagegen.api.openapi import (
    NOT_BLANK,
    int_range_pattern,
    model_name_pattern,
    size_pattern,
)
from imagegen.catalog import Catalog
from imagegen.config import Settings
from imagegen.errors import InvalidRequest, ModelNotFound

CREATE_ROUTES = {
    "/api/v1/images/generate": "ErrorResponse",
    "/v1/images/generations": "OpenAIError",
    "/v1/images/edits": "OpenAIError",
}


@asynccontextmanager
async def no_services(settings: Settings) -> AsyncIterator[Services]:
    raise AssertionError("the schema needs no services")
    yield  # pragma: no cover


def spec(settings: Settings | None = None) -> dict[str, Any]:
    return create_app(settings or Settings(), services=no_services).openapi()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def ref(response: dict[str, Any]) -> str | None:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    reference = schema.get("$ref")
    return reference.rsplit("/", 1)[1] if isinstance(reference, str) else None


# --- validation errors ------------------------------------------------------------------


def test_fastapis_validation_error_is_documented_nowhere() -> None:
    schema = spec()
    assert "HTTPValidationError" not in json.dumps(schema)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "ValidationError" not in schema["components"]["schemas"]
    for path, method, operation in operations(schema):
        if "422" in operation["responses"]:  # a real answer of a create route, its own model
            assert path in CREATE_ROUTES, (method, path)


@pytest.mark.parametrize(
    ("path", "method", "model"),
    [
        ("/api/v1/images/generate", "post", "ErrorResponse"),
        ("/v1/images/generations", "post", "OpenAIError"),
        ("/api/v1/generations", "get", "ErrorResponse"),
    ],
)
def test_validation_errors_are_documented_as_400_with_the_routes_model(
    path: str, method: str, model: str
) -> None:
    responses = spec()["paths"][path][method]["responses"]
    assert ref(responses["400"]) == model
    assert list(responses) == sorted(responses)


@pytest.mark.parametrize(("path", "model"), CREATE_ROUTES.items())
def test_real_422s_stay_documented_with_the_error_model(path: str, model: str) -> None:
    assert ref(spec()["paths"][path]["post"]["responses"]["422"]) == model


def test_routes_that_cannot_fail_validation_document_no_400() -> None:
    paths = spec()["paths"]
    assert set(paths["/v1/models/{model}"]["get"]["responses"]) == {"200", "401", "404"}
    assert ref(paths["/v1/models/{model}"]["get"]["responses"]["404"]) == "OpenAIError"
    responses = paths["/api/v1/generations/{generation_id}"]["get"]["responses"]
    assert set(responses) == {"200", "401", "404"}


# --- authentication --------------------------------------------------------------------

PUBLIC = {"/healthz", "/readyz", "/images/{key}", "/metrics"}


def test_every_route_that_takes_a_key_documents_its_401_in_the_routes_model() -> None:
    schema = spec()
    documented = []
    for path, method, operation in operations(schema):
        if path in PUBLIC or path.startswith("/web") or path in {"/", "/history"}:
            continue
        if path.startswith("/generations/"):  # the playground's pages
            continue
        responses = operation["responses"]
        assert "401" in responses, (method, path)
        model = "OpenAIError" if path.startswith("/v1/") else "ErrorResponse"
        assert ref(responses["401"]) == model, (method, path)
        assert list(responses) == sorted(responses), (method, path)
        documented.append(path)
    assert {"/v1/models", "/api/v1/generations", "/api/v1/images/generate"} <= set(documented)
    assert "OpenAIError" in schema["components"]["schemas"]


def test_routes_without_a_key_document_no_401() -> None:
    paths = spec()["paths"]
    for path in ("/healthz", "/readyz"):
        assert "401" not in paths[path]["get"]["responses"], path


def test_served_openapi_json_is_the_corrected_one() -> None:
    app = create_app(Settings(max_images=3), services=no_services)
    served = TestClient(app).get("/openapi.json").json()
    assert served == app.openapi()
    assert "HTTPValidationError" not in json.dumps(served)


# --- bounds from settings ---------------------------------------------------------------


def properties(schema: dict[str, Any], model: str) -> dict[str, Any]:
    props: dict[str, Any] = schema["components"]["schemas"][model]["properties"]
    return props


def branch(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an optional property (or the property itself)."""
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    assert len(branches) == 1
    return branches[0]


SETTINGS = Settings(min_images=2, max_images=5, min_size=128, max_size=2048, max_prompt_length=99)


def test_seed_request_carries_the_settings_bounds() -> None:
    props = properties(spec(SETTINGS), "GenerateRequest")
    assert props["num_images"] | {"minimum": 2, "maximum": 5} == props["num_images"]
    for side in ("width", "height"):
        assert (props[side]["minimum"], props[side]["maximum"]) == (128, 2048)
    assert (props["prompt"]["minLength"], props["prompt"]["maxLength"]) == (1, 99)
    assert props["prompt"]["pattern"] == NOT_BLANK
    assert props["prompt"]["not"] == {"pattern": "\x00"}  # no NUL in any string
    assert branch(props["negative_prompt"])["maxLength"] == 99
    assert (branch(props["seed"])["minimum"], branch(props["seed"])["maximum"]) == (0, 2**32 - 1)
    assert props["model"]["pattern"] == model_name_pattern()


@pytest.mark.parametrize("blank", [" ", "\t\n", "\x85", "\x1c\x1f", "\u3000\xa0"])
def test_a_prompt_python_strips_to_nothing_does_not_match_the_pattern(blank: str) -> None:
    assert not blank.strip()
    assert re.search(NOT_BLANK, blank) is None


def test_openai_request_carries_the_settings_bounds() -> None:
    props = properties(spec(SETTINGS), "ImageGenerationRequest")
    assert (branch(props["n"])["minimum"], branch(props["n"])["maximum"]) == (2, 5)
    assert branch(props["size"])["pattern"] == size_pattern(128, 2048)
    assert props["prompt"]["maxLength"] == 99
    assert branch(props["model"])["pattern"] == model_name_pattern()
    assert branch(props["stream"])["enum"] == [False]
    assert {"type": "null"} in props["n"]["anyOf"]  # still optional


def test_bounds_follow_each_apps_settings() -> None:
    assert properties(spec(Settings(max_images=7)), "GenerateRequest")["num_images"]["maximum"] == 7
    assert properties(spec(), "GenerateRequest")["num_images"]["maximum"] == 10


# --- the patterns agree with the checks they describe -----------------------------------


def sizes() -> list[str]:
    numbers = [*range(0, 140), *range(990, 1030), *range(2030, 2060), *range(4090, 4100)]
    texts = [str(n) for n in numbers] + [str(n).zfill(6) for n in numbers]
    texts += ["0" * 7 + "64", "1000000", "999999", "64.0", "", "-64", "+64", " 64", "1e3"]
    return texts


def server_accepts_size(size: str, settings: Settings) -> bool:
    request = ImageGenerationRequest(prompt="p", size=size)
    try:
        request._size(settings, route=None)  # type: ignore[arg-type]  # not "auto": no route used
    except InvalidRequest:
        return False
    return True


@pytest.mark.parametrize(("low", "high"), [(64, 4096), (128, 2048), (1, 9), (999, 1001)])
def test_size_pattern_matches_exactly_the_sizes_accepted(low: int, high: int) -> None:
    settings = Settings(min_size=low, max_size=high)
    pattern = re.compile(size_pattern(low, high))
    assert pattern.search("auto")
    for side in sizes():
        for size in (f"{side}x64", f"{side}x{side}", f"{low}x{side}"):
            expected = server_accepts_size(size, settings)
            assert bool(pattern.search(size)) is expected, size


def test_int_range_pattern_counts() -> None:
    pattern = re.compile(f"^{int_range_pattern(64, 4096, digits=6)}$")
    assert sum(1 for n in range(10_000) if pattern.match(str(n))) == 4096 - 64 + 1


@pytest.mark.parametrize(
    "model",
    [
        "black-forest-labs/flux-schnell",
        "  owner/name ",
        "owner/name:" + "a" * 64,
        "owner/name:" + "A" * 64,
        "owner/name:v1",
        "dall-e-3",
        "sdxl:turbo",
        "a b",
        "",
        " ",
        "/x",
        "o/n/extra",
        "-x",
        "x\n",
    ],
)
def test_model_pattern_matches_exactly_the_names_the_catalog_reads(model: str) -> None:
    catalog = Catalog(default=ScriptedProvider())
    try:
        catalog.resolve(model.strip())
    except InvalidRequest:
        readable = False
    except ModelNotFound:  # a well-formed name nothing serves: a 404, not a 400
        readable = True
    else:
        readable = True
    readable = readable and bool(model.strip())
    assert bool(re.search(model_name_pattern(), model)) is readable


# --- webhooks ---------------------------------------------------------------------------


def test_without_a_webhook_secret_only_null_webhooks_are_valid() -> None:
    props = properties(spec(), "GenerateRequest")
    assert props["webhook"]["anyOf"] == [{"type": "null"}]
    assert props["webhook_events_filter"]["anyOf"] == [{"type": "null"}]
    assert "IMAGEGEN_WEBHOOK_SECRET" in props["webhook"]["description"]


def test_with_a_webhook_secret_webhooks_are_http_urls_and_filters_need_one() -> None:
    secret = "whsec_" + "c2VjcmV0LWtleS1mb3ItaW1hZ2VnZW4tdGVzdHMtMzI="
    model = spec(Settings(webhook_secret=secret))["components"]["schemas"]["GenerateRequest"]
    url = branch(model["properties"]["webhook"])
    pattern = re.compile(url["pattern"])
    for good in ("https://hooks.example.com/x?y=1", "http://h:8080", " HTTP://h/ "):
        assert pattern.search(good), good
    for bad in ("ftp://h/", "https://user:pw@h/", "https:///x", "hooks.example.com", ""):
        assert not pattern.search(bad), bad
    assert branch(model["properties"]["webhook_events_filter"])["minItems"] == 1
    assert model["then"]["required"] == ["webhook"]
