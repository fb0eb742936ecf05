"""The one place where imagegen's errors become HTTP responses.

Starlette resolves exception handlers along the class hierarchy, so one handler on
``ImagegenError`` plus the ``STATUS`` table serves every route. Seed routes answer
``{"error": "..."}``; routes under ``/v1/`` (the OpenAI-compatible API) use OpenAI's envelope.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagegen import errors

log = logging.getLogger(__name__)

# Most specific class first; the first match wins.
STATUS: tuple[tuple[type[errors.ImagegenError], int], ...] = (
    (errors.InvalidRequest, 400),
    (errors.NotFound, 404),
    (errors.UnsupportedModel, 422),
    (errors.IdempotencyConflict, 422),
    (errors.ConfigurationError, 503),
    (errors.QueueFull, 503),
    (errors.DeadlineExceeded, 504),
    (errors.Canceled, 409),
    (errors.UpstreamRateLimited, 429),
    (errors.UpstreamHTTPError, 502),  # 4xx statuses are passed through, see status_for
    (errors.UpstreamError, 502),
    (errors.ImagegenError, 500),
)

# Upstream client errors the user can act on keep the upstream's own status.
PASS_THROUGH = frozenset({400, 401, 402, 403, 404, 409, 413, 422, 429})


def status_for(exc: errors.ImagegenError) -> int:
    if isinstance(exc, errors.UpstreamHTTPError) and exc.status in PASS_THROUGH:
        return exc.status
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def retry_after(exc: errors.ImagegenError) -> str | None:
    seconds = getattr(exc, "retry_after", None)
    if isinstance(seconds, int | float) and seconds >= 0:
        return str(max(1, math.ceil(seconds)))
    return None


def is_openai_route(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def error_response(request: Request, status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {k: v for k, v in extra.pop("headers", {}).items() if v is not None}
    if is_openai_route(request):
        body: dict[str, Any] = {
            "error": {
                "message": message,
                "type": extra.get("type", "invalid_request_error" if status < 500 else "api_error"),
                "param": extra.get("param"),
                "code": extra.get("code"),
            }
        }
    else:
        body = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)


async def handle_imagegen_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ImagegenError)
    status = status_for(exc)
    if status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc)
    return error_response(
        request,
        status,
        str(exc),
        headers={"Retry-After": retry_after(exc)},
        param=getattr(exc, "field", None),
        code=exc.code,
    )


def validation_message(problems: Sequence[Any]) -> tuple[str, str | None]:
    """Turn pydantic's error list into one sentence that names the field."""
    if not problems:
        return "invalid request", None
    first = problems[0]
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body",)]
    field = ".".join(loc) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return "request body is not valid JSON", None
    if kind == "extra_forbidden":
        return f"{field}: unknown field", field
    if kind == "missing":
        return f"{field}: field required", field
    if field is None and kind in ("model_attributes_type", "dict_type", "model_type"):
        return "request body must be a JSON object", None
    message = str(first.get("msg", "invalid value"))
    return (f"{field}: {message}" if field else message), field


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, field = validation_message(exc.errors())
    return error_response(request, 400, message, param=field, code="invalid_request")


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    return error_response(request, exc.status_code, message, headers=dict(exc.headers or {}))


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.ImagegenError, handle_imagegen_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(Exception, handle_unexpected)
