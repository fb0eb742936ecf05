"""The one place where imagegen's errors become HTTP responses.

Starlette resolves exception handlers along the class hierarchy, so one handler on
``ImagegenError`` plus the ``STATUS`` table serves every route. Seed routes answer
``{"error": "..."}``; routes under ``/v1/`` (the OpenAI-compatible API) use OpenAI's envelope,
``{"error": {"message", "type", "param", "code"}}``, with the values OpenAI itself uses where
there is one (``invalid_request_error``, ``server_error``; ``model_not_found``,
``rate_limit_exceeded``, an OpenAI-compatible upstream's own code such as
``content_policy_violation``).

Every error says whether sending it again can help, in ``x-should-retry`` (which the official
OpenAI SDKs obey before their own status rules): ``true`` for 429 and 503 (with
``Retry-After``), ``false`` for every other 4xx, a passed deadline (504) and a failed model;
nothing otherwise.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagegen import errors
from imagegen.storage.faults import LOCAL_FAULTS

log = logging.getLogger(__name__)

# Most specific class first; the first match wins.
STATUS: tuple[tuple[type[errors.ImagegenError], int], ...] = (
    (errors.InvalidRequest, 400),
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (errors.KeyLimitExceeded, 429),  # QuotaExceeded too
    (errors.NotFound, 404),
    (errors.UnsupportedModel, 422),
    (errors.IdempotencyConflict, 422),
    (errors.ConfigurationError, 503),
    (errors.QueueFull, 503),  # StoreBusy, DatabaseUnavailable too: the database
    (errors.LocalFault, 503),  # imagegen's own disk: never the provider's fault
    (errors.DeadlineExceeded, 504),
    (errors.Canceled, 409),
    (errors.InvalidTransition, 409),  # e.g. a job that ended while it was being changed
    (errors.LeaseLost, 503),  # the job moved to another instance mid-request; it runs there
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
    path = request.url.path
    return path == "/v1" or path.startswith("/v1/")


RETRYABLE_STATUSES = frozenset({429, 503})
# Errors a retry cannot fix although their status is 5xx: the same request would pay for the
# same outcome again (the official SDKs retry 5xx unless told not to).
FINAL_ERRORS: tuple[type[errors.ImagegenError], ...] = (
    errors.DeadlineExceeded,
    errors.PredictionFailed,
)


def should_retry(status: int, exc: errors.ImagegenError | None = None) -> str | None:
    """``x-should-retry`` for an error: "true", "false", or None (let the client decide)."""
    if status in RETRYABLE_STATUSES:
        return "true"
    if status < 500 or status == 504 or isinstance(exc, FINAL_ERRORS):
        return "false"
    return None


def openai_type(status: int) -> str:
    """OpenAI's ``error.type`` for a status (429s are typed by the limit, "requests")."""
    if status == 429:
        return "requests"
    return "invalid_request_error" if status < 500 else "server_error"


def error_response(request: Request, status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"x-should-retry": extra.pop("should_retry", should_retry(status))}
    headers.update(extra.pop("headers", {}))
    headers = {k: v for k, v in headers.items() if v is not None}
    if is_openai_route(request):
        body: dict[str, Any] = {
            "error": {
                "message": message,
                "type": extra.get("type", openai_type(status)),
                "param": extra.get("param"),
                "code": extra.get("code"),
            }
        }
    else:
        body = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)


# Codes OpenAI uses for the same situation, where imagegen's own code differs.
OPENAI_CODES: tuple[tuple[type[errors.ImagegenError], str], ...] = (
    (errors.InvalidRequest, "invalid_value"),
    (errors.UpstreamRateLimited, "rate_limit_exceeded"),
    (errors.Unauthenticated, "invalid_api_key"),
    (errors.QuotaExceeded, "insufficient_quota"),
    (errors.KeyLimitExceeded, "rate_limit_exceeded"),
)
# OpenAI's ``error.type`` where it is not the status's default.
OPENAI_TYPES: tuple[tuple[type[errors.ImagegenError], str], ...] = (
    (errors.QuotaExceeded, "insufficient_quota"),
)
_UPSTREAM_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def openai_code(exc: errors.ImagegenError) -> str:
    """An OpenAI-compatible upstream's own code (``content_policy_violation``), else OpenAI's
    code for the case, else imagegen's."""
    if isinstance(exc, errors.UpstreamHTTPError) and exc.title and _UPSTREAM_CODE.match(exc.title):
        return exc.title  # Replicate's titles are prose ("Unauthenticated"), never snake_case
    return next((code for cls, code in OPENAI_CODES if isinstance(exc, cls)), exc.code)


def param_of(exc: errors.ImagegenError) -> str | None:
    """The request field at fault: ``field``, or ``model`` for a model the catalog refuses."""
    if isinstance(exc, errors.ModelNotFound | errors.UnsupportedModel):
        return "model"
    field = getattr(exc, "field", None)
    return field if isinstance(field, str) else None


async def handle_imagegen_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ImagegenError)
    status = status_for(exc)
    if status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc)
    headers = {"Retry-After": retry_after(exc)}
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    kind = next((name for cls, name in OPENAI_TYPES if isinstance(exc, cls)), None)
    return error_response(
        request,
        status,
        str(exc),
        headers=headers,
        should_retry=should_retry(status, exc),
        param=param_of(exc),
        code=openai_code(exc) if is_openai_route(request) else exc.code,
        **({"type": kind} if kind else {}),
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
    if kind == "missing" and field is None:
        return "request body is empty: send a JSON object", None
    if kind == "missing":
        return f"{field}: field required", field
    if field is None and kind in ("model_attributes_type", "dict_type", "model_type"):
        return "request body must be a JSON object", None
    message = str(first.get("msg", "invalid value"))
    return (f"{field}: {message}" if field else message), field


# pydantic error type -> OpenAI's code for it; other types are "invalid_value".
_VALIDATION_CODES = {
    "missing": "missing_required_parameter",
    "extra_forbidden": "unknown_parameter",
    "json_invalid": "invalid_json",
}


def validation_code(problems: Sequence[Any]) -> str:
    kind = str(problems[0].get("type", "")) if problems else ""
    if kind in _VALIDATION_CODES:
        return _VALIDATION_CODES[kind]
    return "invalid_type" if kind.endswith("_type") else "invalid_value"


def openai_validation_message(message: str, field: str | None, code: str) -> str:
    """OpenAI's wording for a missing or unknown parameter; imagegen's otherwise."""
    if field is None:
        return message
    if code == "missing_required_parameter":
        return f"Missing required parameter: '{field}'."
    if code == "unknown_parameter":
        return f"Unknown parameter: '{field}'."
    return message


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    message, field = validation_message(problems)
    if not is_openai_route(request):
        return error_response(request, 400, message, param=field, code="invalid_request")
    code = validation_code(problems)
    message = openai_validation_message(message, field, code)
    return error_response(request, 400, message, param=field, code=code)


async def handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    return error_response(request, exc.status_code, message, headers=dict(exc.headers or {}))


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, OSError) and exc.errno in LOCAL_FAULTS:  # a disk fault no layer named
        fault = errors.LocalFault(f"imagegen cannot use its disk: {exc.strerror or exc}")
        return await handle_imagegen_error(request, fault)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.ImagegenError, handle_imagegen_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(Exception, handle_unexpected)
