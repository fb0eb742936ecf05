"""Translation of Replicate replies and transport failures into ``imagegen.errors``.

Error messages copy ``str(ReplicateError)`` of the official client (replicate 1.0.7) exactly, so
users of the seed API see what they saw before: ``"ReplicateError Details:\\n"`` followed by
``key: value`` lines over type, title, status, detail and instance, omitting missing ones, with
``status`` always the HTTP status code. Classification is by HTTP status and exception type only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from imagegen.errors import (
    PredictionFailed,
    UpstreamHTTPError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from imagegen.retry_after import DEFAULT_MAX_RETRY_AFTER, clamp, parse_retry_after, seconds_of
from imagegen.upstream import Reply

PROVIDER = "replicate"

# Replicate's documented 429 bodies carry the wait only in prose ("Your rate limit resets in
# ~30s.", older: "Expected available in 1 second."), and no Retry-After header has ever been
# recorded from it. Reading this one number from the text is a last resort after the header and
# the ``retry_after`` body field; it only tunes a wait, it never decides what kind of error it is.
_RESETS_IN = re.compile(r"(?:resets in ~?|available in )(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)

_FIELDS = ("type", "title", "status", "detail", "instance")


def format_error(status: int, body: Mapping[str, Any]) -> str:
    """The exact ``str(ReplicateError)`` for a reply with this status and (JSON object) body."""
    values = {key: body.get(key) for key in _FIELDS}
    values["status"] = status
    lines = [f"{key}: {value}" for key, value in values.items() if value is not None]
    return "ReplicateError Details:\n" + "\n".join(lines)


def no_token_error() -> UpstreamHTTPError:
    """What Replicate answers without a token; raised locally when none is configured."""
    title, detail = "Unauthenticated", "You did not pass an authentication token"
    message = format_error(401, {"title": title, "detail": detail})
    return UpstreamHTTPError(message, provider=PROVIDER, status=401, title=title, detail=detail)


def _json_object(response: Reply) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: Any, scrub: Callable[[str], str]) -> str | None:
    return None if value is None else scrub(str(value))


def _unchanged(text: str) -> str:
    return text


def error_from_response(
    response: Reply,
    *,
    scrub: Callable[[str], str] = _unchanged,
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
) -> UpstreamHTTPError:
    """An error for a 4xx/5xx reply: ``UpstreamRateLimited`` for 429, else ``UpstreamHTTPError``.

    Its text goes through ``scrub`` (credentials redacted, length bounded) and its retry-after is
    clamped to ``max_retry_after``.
    """
    body = _json_object(response)
    status = response.status_code
    message = scrub(format_error(status, body))
    title, detail = _text(body.get("title"), scrub), _text(body.get("detail"), scrub)
    if status == 429:
        return UpstreamRateLimited(
            message,
            provider=PROVIDER,
            title=title,
            detail=detail,
            retry_after=retry_after_of(response, max_retry_after),
        )
    return UpstreamHTTPError(message, provider=PROVIDER, status=status, title=title, detail=detail)


def retry_after_of(response: Reply, maximum: float = DEFAULT_MAX_RETRY_AFTER) -> float | None:
    """Seconds to wait, at most ``maximum``: ``Retry-After``, else the body's ``retry_after``,
    else the detail text."""
    return clamp(_retry_after_hint(response), maximum)


def _retry_after_hint(response: Reply) -> float | None:
    header = parse_retry_after(response.headers.get("retry-after"))
    if header is not None:
        return header
    body = _json_object(response)
    field = seconds_of(body.get("retry_after"))
    if field is not None:
        return field
    match = _RESETS_IN.search(str(body.get("detail") or "")[:1000])
    return float(match[1]) if match else None


def transport_error(exc: httpx.HTTPError, action: str) -> UpstreamUnavailable:
    """An ``UpstreamUnavailable`` for a connection failure or timeout while doing ``action``."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        reason = "could not connect"
    elif isinstance(exc, httpx.TimeoutException):
        reason = "timed out"
    else:
        reason = "connection failed"
    detail = f" ({type(exc).__name__}: {exc})" if str(exc) else f" ({type(exc).__name__})"
    return UpstreamUnavailable(f"Replicate: {reason} while {action}{detail}", provider=PROVIDER)


def malformed_reply(action: str, problem: str) -> UpstreamUnavailable:
    """An ``UpstreamUnavailable`` for a reply we cannot use."""
    return UpstreamUnavailable(
        f"Replicate: malformed reply while {action}: {problem}", provider=PROVIDER
    )


def prediction_failed(message: str, prediction_id: str) -> PredictionFailed:
    return PredictionFailed(message, provider=PROVIDER, prediction_id=prediction_id)
