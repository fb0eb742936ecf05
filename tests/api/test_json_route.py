"""The create endpoints' own request handling (``api/json_route.py``) answers every malformed
request exactly as FastAPI's general handling of the same declared endpoint does: status, body
and order of checks (undecodable JSON before the API key, the key before the fields)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from tests.fakes.scripted_provider import ScriptedProvider

from imagegen.api import errors
from imagegen.api.deps import CallerDep, Services, require_json, storable_parameters
from imagegen.api.json_route import JsonBodyRoute
from imagegen.api.routes import openai, seed
from imagegen.api.schemas import GenerateRequest
from imagegen.auth.principal import ANONYMOUS, Principal
from imagegen.catalog import Catalog
from imagegen.config import Settings
from imagegen.errors import Unauthenticated

GOOD_KEY = "Bearer ig_good"


class KeyRequired:
    """An authenticator that knows one key."""

    async def authenticate(self, authorization: str | None) -> Principal:
        if authorization != GOOD_KEY:
            raise Unauthenticated("a valid API key is required")
        return ANONYMOUS


def services(tmp_path: Path) -> Services:
    settings = Settings(data_dir=tmp_path, public_base_url="https://images.example")
    return Services(
        settings=settings,
        runner=None,  # type: ignore[arg-type]  # no request here gets as far as a job
        catalog=Catalog(default=ScriptedProvider()),
        store=None,  # type: ignore[arg-type]
        image_store=None,  # type: ignore[arg-type]
        inputs=None,  # type: ignore[arg-type]
        auth=KeyRequired(),  # type: ignore[arg-type]
    )


def app_with(route_class: type[APIRoute], built: Services) -> FastAPI:
    """The create endpoints as the app declares them, answered by ``route_class``."""
    app = FastAPI(dependencies=[Depends(storable_parameters)])
    errors.install(app)
    for route in (*seed.router.routes, *openai.router.routes):
        assert isinstance(route, JsonBodyRoute)
        app.router.add_api_route(
            route.path,
            route.endpoint,
            methods=list(route.methods),
            response_model=route.response_model,
            response_model_exclude_none=route.response_model_exclude_none,
            dependencies=route.dependencies,
            route_class_override=route_class,
        )
    app.state.services = built
    return app


BODIES = [
    b"",
    b"null",
    b"[]",
    b'"text"',
    b"{",
    b'{"model": 1',
    b"{}",
    b'{"model": 1}',
    b'{"prompt": "\\ud800"}',
    b'{"prompt": "a\\u0000"}',
    b'{"\\u0000": 1}',
    b'{"model": "owner/model", "prompt": "a cat", "num_images": 1, "width": 512, "height": 512, '
    b'"extra": 1}',
    b'{"model": "owner/model", "prompt": "a cat", "num_images": "1", "width": 512, "height": 512}',
    b'{"model": "owner/model", "prompt": "a cat", "num_images": 0, "width": 512, "height": 512}',
    b'{"model": "owner/model", "prompt": " ", "num_images": 1, "width": 512, "height": 512}',
    b'{"model": "owner/model", "prompt": "a cat", "n": 0, "size": "big"}',
    b'{"prompt": "a cat", "n": 1.5}',
    b'{"prompt": "a cat", "n": 1, "stream": true}',
    b'{"prompt": "a cat", "model": "nope"}',
    b'{"prompt": NaN}',
    b"\xff\xfe",
    b"\xff\xff",
    b'{"prompt": "\xe9"}',
    b"[" * 100_000,
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON",
    "application/problem+json",
    "text/plain",
    None,
]


@pytest.mark.parametrize("path", ["/api/v1/images/generate", "/v1/images/generations"])
@pytest.mark.parametrize("authorization", [GOOD_KEY, None])
@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_errors_are_fastapis(
    tmp_path: Path, path: str, authorization: str | None, content_type: str | None
) -> None:
    built = services(tmp_path)
    ours = TestClient(app_with(JsonBodyRoute, built), raise_server_exceptions=False)
    fastapis = TestClient(app_with(APIRoute, built), raise_server_exceptions=False)
    headers = {"authorization": authorization, "content-type": content_type}
    sent = {name: value for name, value in headers.items() if value is not None}
    for body in BODIES:
        for query in ("", "?x=%00"):
            expected = fastapis.post(path + query, content=body, headers=sent)
            got = ours.post(path + query, content=body, headers=sent)
            assert expected.status_code < 500, (body, expected.text)
            assert (got.status_code, got.json()) == (expected.status_code, expected.json()), body
            assert got.headers.get("x-should-retry") == expected.headers.get("x-should-retry")


def test_a_model_answer_is_serialised_once_as_declared(tmp_path: Path) -> None:
    async def endpoint(body: GenerateRequest, caller: CallerDep) -> Any:
        assert caller.base_url == "https://images.example"
        return openai.ImagesResponse(created=1, data=[openai.ImageData(url="u")], id="gen_1")

    app = FastAPI()
    app.state.services = services(tmp_path)
    app.router.add_api_route(
        "/x",
        endpoint,
        methods=["POST"],
        response_model=openai.ImagesResponse,
        response_model_exclude_none=True,
        dependencies=[Depends(require_json)],
        route_class_override=JsonBodyRoute,
    )
    body = b'{"model": "o/m", "prompt": "p", "num_images": 1, "width": 64, "height": 64}'
    headers = {"content-type": "application/json", "authorization": GOOD_KEY}
    response = TestClient(app).post("/x", content=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'{"created":1,"data":[{"url":"u"}],"id":"gen_1"}'


def test_a_dependency_it_does_not_run_is_refused() -> None:
    async def other() -> None:
        return None

    async def endpoint(body: GenerateRequest, caller: CallerDep) -> Any:
        return None

    app = FastAPI()
    with pytest.raises(TypeError, match="does not run"):
        app.router.add_api_route(
            "/x",
            endpoint,
            methods=["POST"],
            dependencies=[Depends(other)],
            route_class_override=JsonBodyRoute,
        )
