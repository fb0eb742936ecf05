"""``/docs`` (Swagger UI) and ``/redoc`` that render with no internet: ``install(app)``.

FastAPI's own pages load their JavaScript and CSS from a CDN. Here the same pages load them from
imagegen, under ``/docs/static/``: the assets are the static files of the ``fastapi-offline``
wheel (Swagger UI, Apache-2.0; ReDoc, MIT), served as they are installed.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/docs/static"
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"


def assets_dir() -> Path:
    """Where the installed Swagger UI and ReDoc assets lie."""
    return Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Serve the assets and both pages; the app must be built with ``docs_url=None`` and
    ``redoc_url=None``."""
    app.mount(STATIC, StaticFiles(directory=assets_dir()), name="docs-static")
    title = f"{app.title} - API"
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=title,
            swagger_js_url=f"{root}{STATIC}/{SWAGGER_JS}",
            swagger_css_url=f"{root}{STATIC}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{STATIC}/{FAVICON}",
            # Swagger UI would otherwise fetch a validity badge from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=title,
            redoc_js_url=f"{root}{STATIC}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{STATIC}/{FAVICON}",
            with_google_fonts=False,
        )
