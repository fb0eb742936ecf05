"""The playground's routes: served from the package, same-origin only, clear of the API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import pytest
from fastapi.testclient import TestClient

from imagegen.api.app import create_app
from imagegen.api.deps import Services
from imagegen.config import Settings
from imagegen.web.routes import CONTENT_SECURITY_POLICY

STATIC = resources.files("imagegen.web").joinpath("static")
PAGES = {"/": "playground.js", "/history": "history.js", "/generations/gen_abc": "generation.js"}


@asynccontextmanager
async def no_services(settings: Settings) -> AsyncIterator[Services]:
    raise AssertionError("the pages need no services")
    yield  # pragma: no cover


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(Settings(), services=no_services))  # no lifespan: no services


def static_files() -> dict[str, str]:
    return {item.name: item.read_text() for item in STATIC.iterdir() if item.is_file()}


@pytest.mark.parametrize(("path", "script"), PAGES.items())
def test_each_page_is_html_with_a_same_origin_policy(
    client: TestClient, path: str, script: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert f'src="/assets/{script}"' in response.text


def test_every_asset_the_pages_name_is_served_and_nothing_comes_from_elsewhere(
    client: TestClient,
) -> None:
    files = static_files()
    named = set()
    for text in files.values():
        named |= set(re.findall(r"/assets/([\w.-]+)", text))
        named |= set(re.findall(r'from "\./([\w.-]+)"', text))
        without_namespaces = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", without_namespaces)
        assert "<style" not in text  # the policy allows no inline style or script
        assert not re.search(r"<script(?![^>]*\bsrc=)", text)
    assert named, "the pages load their scripts and styles from /assets/"
    for name in named:
        response = client.get(f"/assets/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_unknown_assets_are_a_json_404(client: TestClient) -> None:
    for path in ("/assets/nope.js", "/assets/..%2Fweb%2Froutes.py", "/assets/index.html"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "error" in response.json()


def test_the_pages_do_not_touch_the_api_or_its_documentation(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert not [
        path
        for path in schema["paths"]
        if not path.startswith(("/api/", "/v1/", "/images/", "/healthz", "/readyz"))
    ]
    assert client.get("/docs").status_code == 200
    assert "content-security-policy" not in client.get("/docs").headers  # its own CDN assets
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no route for GET /api/v1/nothing-here"}
