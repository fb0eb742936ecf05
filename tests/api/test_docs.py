"""``/docs`` and ``/redoc`` render with no internet: every asset they load is served by imagegen."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi.testclient import TestClient

from imagegen.api.app import create_app
from imagegen.api.deps import Services
from imagegen.config import Settings

# Anything a page could load: src/href attributes, Swagger UI's spec url, ReDoc's spec-url.
LOADED = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl:\s*'([^']+)'""")
CONTENT_TYPES = {
    ".js": "javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


@asynccontextmanager
async def no_services(settings: Settings) -> AsyncIterator[Services]:
    raise AssertionError("the documentation pages need no services")
    yield  # pragma: no cover


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(Settings(), services=no_services))


@pytest.mark.parametrize(("page", "script"), [("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc")])
def test_documentation_pages_load_only_imagegen_urls_and_those_serve_the_assets(
    client: TestClient, page: str, script: str
) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    assert "://" not in html.replace("http://www.w3.org", "")  # no CDN, no fonts, no validator
    urls = [next(filter(None, found)) for found in LOADED.findall(html)]
    assert any(url.endswith(".js") for url in urls), urls
    assert "/openapi.json" in urls
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rfind(".") :]
        assert CONTENT_TYPES[suffix] in asset.headers["content-type"], url
        if suffix == ".js":
            assert script in asset.text  # the real bundle, not a stub
            assert len(asset.content) > 100_000


def test_swagger_ui_bundle_renders_openapi_3_1(client: TestClient) -> None:
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders from version 5 on."""
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = client.get("/docs/static/swagger-ui-bundle.js").text
    versions = re.findall(r'"(\d+)\.(\d+)\.(\d+)"', bundle)
    assert any(int(major) >= 5 for major, _, _ in versions)


def test_pages_honour_the_root_path_of_a_reverse_proxy() -> None:
    client = TestClient(create_app(Settings(), services=no_services), root_path="/imagegen")
    html = client.get("/docs").text
    assert 'src="/imagegen/docs/static/swagger-ui-bundle.js"' in html
    assert "url: '/imagegen/openapi.json'" in html
