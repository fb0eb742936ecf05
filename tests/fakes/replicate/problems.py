"""Response bodies exactly as Replicate sends them (notes section 2), and the JSON encoder."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import Response
from tests.fakes.replicate.validation import InvalidField, detail_text

JSON_TYPE = "application/json; charset=utf-8"
PROBLEM_TYPE = "application/problem+json"

NOT_FOUND_DETAIL = "The requested resource could not be found."
NO_TOKEN_DETAIL = "You did not pass an authentication token"
BAD_TOKEN_DETAIL = "You did not pass a valid authentication token"
INVALID_VERSION_TITLE = "Invalid version or not permitted"
INVALID_VERSION_DETAIL = (
    "The specified version does not exist (or perhaps you don't have permission to use it?)"
)
CREDIT_DETAIL = (
    "You have insufficient credit to run this model. Go to "
    "https://replicate.com/account/billing#billing to purchase credit. Once you purchase credit, "
    "please wait a few minutes before trying again."
)
LOW_CREDIT_DETAIL = (
    "Request was throttled. Your rate limit for creating predictions is reduced to 6 requests "
    "per minute with a burst of 1 requests while you have less than $5.0 in credit. Your rate "
    "limit resets in ~{}s."
)
THROTTLED_DETAIL = "Request was throttled. Your rate limit resets in ~{}s."
OFFICIAL_VERSIONS_DETAIL = "This model is an official model and does not expose a list of versions."


def dumps(body: Any) -> bytes:
    """Compact JSON with a trailing newline, as the real API writes it."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(dumps(body), status, dict(headers or {}), media_type=JSON_TYPE)


def problem(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    return Response(dumps(body), status, dict(headers or {}), media_type=PROBLEM_TYPE)


def not_found() -> Response:
    return problem(404, {"detail": NOT_FOUND_DETAIL, "status": 404})


def unauthenticated(token_sent: bool) -> Response:
    detail = BAD_TOKEN_DETAIL if token_sent else NO_TOKEN_DETAIL
    return problem(401, {"title": "Unauthenticated", "detail": detail, "status": 401})


def invalid_version() -> Response:
    body = {"title": INVALID_VERSION_TITLE, "detail": INVALID_VERSION_DETAIL, "status": 422}
    return problem(422, body)


def insufficient_credit() -> Response:
    return problem(402, {"title": "Insufficient credit", "detail": CREDIT_DETAIL, "status": 402})


def official_versions_hidden() -> Response:
    return problem(404, {"status": 404, "title": "Not found", "detail": OFFICIAL_VERSIONS_DETAIL})


def throttled(retry_after: int, *, low_credit: bool = False) -> Response:
    template = LOW_CREDIT_DETAIL if low_credit else THROTTLED_DETAIL
    body = {"detail": template.format(retry_after), "status": 429, "retry_after": retry_after}
    headers = {
        "Retry-After": str(retry_after),
        "ratelimit-remaining": "0",
        "ratelimit-reset": str(retry_after),
    }
    return problem(429, body, headers)


def validation_failed(fields: Sequence[InvalidField]) -> Response:
    body = {
        "detail": detail_text(fields),
        "status": 422,
        "title": "Input validation failed",
        "invalid_fields": [
            {"type": f.type, "field": f.field, "description": f.description} for f in fields
        ],
    }
    return problem(422, body)


def bad_request(detail: str) -> Response:
    # Not observed on the real API: a plain problem document for malformed JSON / headers.
    return problem(400, {"detail": detail, "status": 400})
