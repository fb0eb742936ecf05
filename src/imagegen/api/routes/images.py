"""``GET`` and ``HEAD /images/{key}``: serve stored images, cacheable forever.

Contract with the app factory: ``app.state.image_store`` holds the ``ImageStore`` to serve from
(set in the lifespan, before the first request). ``get_image_store`` reads it; tests and other
apps override that dependency or set the attribute.

Keys are content-addressed (``<sha256>.<ext>``) and immutable, so responses carry a strong
``ETag`` (the quoted sha256) and ``Cache-Control: immutable``, and ``If-None-Match`` gets a 304.
Anything under ``/images/`` that is not a well-formed key, including encoded slashes and
``..`` segments, is a JSON 404 and never reaches the store.

A store that hands out direct links (``RedirectingStore``: S3 with presigned redirects on)
answers a GET for a present key with a 307 to a short-lived URL instead of the bytes; HEAD and
304s are still answered here, with the same headers as a streamed image.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from imagegen.errors import ConfigurationError, NotFound
from imagegen.storage.base import (
    CACHE_CONTROL,
    ImageStore,
    StoredObject,
    is_valid_key,
)

router = APIRouter(tags=["images"])


async def get_image_store(request: Request) -> ImageStore:
    """The store set by the app factory as ``app.state.image_store``."""
    store = getattr(request.app.state, "image_store", None)
    if store is None:
        raise ConfigurationError("no image store is configured")
    return cast(ImageStore, store)


ImageStoreDep = Annotated[ImageStore, Depends(get_image_store)]

_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "The image.", "content": {t: {} for t in _IMAGE_TYPES}},
    304: {"description": "The client's cached copy (If-None-Match) is current."},
    307: {"description": "Fetch the image from this short-lived URL (presigned S3 redirects)."},
    404: {
        "description": "No such image, or not a valid key.",
        "content": {"application/json": {"example": {"error": "image not found"}}},
    },
}
#: Images up to this size (one chunk of a stream: no more held than streaming holds) are read
#: whole and sent as one response; larger ones are streamed.
BUFFERED_BYTES = 256 * 1024
_PATH = "/images/{key:path}"  # :path, so that keys with slashes still get this route's JSON 404


@router.get(_PATH, response_class=Response, responses=_RESPONSES, operation_id="get_image")
async def get_image(key: str, request: Request, store: ImageStoreDep) -> Response:
    """The stored image's bytes, with its real content type."""
    return await _serve(key, request, store)


@router.head(_PATH, response_class=Response, responses=_RESPONSES, operation_id="head_image")
async def head_image(key: str, request: Request, store: ImageStoreDep) -> Response:
    """The headers ``GET`` would send, without the body."""
    return await _serve(key, request, store)


async def _serve(key: str, request: Request, store: ImageStore) -> Response:
    if not is_valid_key(key):
        return _not_found()
    try:
        stored = await store.stat(key)
    except NotFound:
        return _not_found()
    headers = _headers(stored)
    if _etag_matches(request.headers.get("if-none-match"), stored.etag):
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(stored.size_bytes)
        return Response(headers=headers, media_type=stored.content_type)
    # A RedirectingStore, told by its method: isinstance of a Protocol costs ~12 us a call.
    redirect_url = getattr(store, "redirect_url", None)
    if callable(redirect_url) and (url := await redirect_url(key)):
        # The link expires: the redirect itself must not be cached like the image.
        return Response(status_code=307, headers={"Location": url, "Cache-Control": "no-store"})
    if stored.size_bytes <= BUFFERED_BYTES:  # read whole, then sent in one piece
        content = b"".join([chunk async for chunk in store.iter_bytes(key)])
        return Response(content, headers=headers, media_type=stored.content_type)
    headers["Content-Length"] = str(stored.size_bytes)
    return StreamingResponse(store.iter_bytes(key), headers=headers, media_type=stored.content_type)


def _headers(stored: StoredObject) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Cache-Control": CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
    }


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison against a comma-separated ``If-None-Match`` list."""
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def _not_found() -> JSONResponse:
    return JSONResponse({"error": "image not found"}, status_code=404)
