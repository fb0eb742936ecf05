"""The playground's routes: ``/``, ``/history``, ``/generations/{id}`` and ``/assets/{name}``.

The pages are shells: each one loads its script, which reads the API (with the user's key,
when one is set). A generation's page is served for any id; the API answers whether it exists.
None of these routes is part of the API, so none appears in the OpenAPI document.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from imagegen.errors import NotFound

router = APIRouter(include_in_schema=False)

# Everything the pages load comes from this origin: no CDN, no inline script or style.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_ASSETS = frozenset(
    {
        "style.css",
        "api.js",
        "key.js",
        "job.js",
        "render.js",
        "playground.js",
        "history.js",
        "generation.js",
        "favicon.svg",
    }
)


@cache
def _read(name: str) -> bytes:
    return resources.files("imagegen.web").joinpath("static", name).read_bytes()


def _file(name: str) -> Response:
    suffix = name[name.rfind(".") :]
    return Response(
        _read(name),
        media_type=_TYPES[suffix],
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-cache",
        },
    )


@router.get("/")
async def playground() -> Response:
    return _file("index.html")


@router.get("/history")
async def history() -> Response:
    return _file("history.html")


@router.get("/generations/{generation_id}")
async def generation(generation_id: str) -> Response:
    return _file("generation.html")


@router.get("/assets/{name}")
async def asset(name: str) -> Response:
    if name not in _ASSETS:
        raise NotFound(f"no asset named {name!r}")
    return _file(name)
