"""``GET /v1/predictions``: the account's predictions, newest first, paged as Replicate pages them.

Replicate answers ``{"next", "previous", "results"}`` with 100 predictions per page; ``next`` is
the URL of the following page (an opaque ``cursor`` query parameter), ``null`` on the last.
``created_after`` keeps predictions created at or after that instant, ``created_before`` those
created strictly before it (ISO 8601; a malformed value is a 400).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from tests.fakes.replicate.predictions import Prediction, render

PAGE_SIZE = 100


@dataclass(frozen=True)
class ListQuery:
    created_after: float | None = None
    created_before: float | None = None
    after: tuple[float, str] | None = None  # the last (created, id) of the previous page


class BadQuery(ValueError):
    pass


def parse_query(params: dict[str, str]) -> ListQuery:
    """Read the query string; ``BadQuery`` names a malformed parameter."""
    return ListQuery(
        _instant(params, "created_after"),
        _instant(params, "created_before"),
        _cursor(params.get("cursor")),
    )


def _instant(params: dict[str, str], name: str) -> float | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"{name} must be an ISO 8601 date-time, got {raw!r}") from None
    if parsed.tzinfo is None:
        raise BadQuery(f"{name} must carry a time zone, got {raw!r}")
    return parsed.timestamp()


def _cursor(raw: str | None) -> tuple[float, str] | None:
    if raw is None:
        return None
    try:
        created, last_id = json.loads(base64.urlsafe_b64decode(raw.encode()))
        return float(created), str(last_id)
    except (binascii.Error, ValueError, TypeError):
        raise BadQuery("invalid cursor") from None


def page(
    predictions: Iterable[Prediction], query: ListQuery, *, url: str, size: int = PAGE_SIZE
) -> dict[str, Any]:
    """One page of ``predictions`` matching ``query``, newest first; ``url`` is the route's own
    address (``next`` repeats its filters with a cursor)."""
    chosen = sorted(
        (p for p in predictions if _matches(p, query)),
        key=lambda p: (p.created, p.id),
        reverse=True,
    )
    results = chosen[:size]
    next_url = None
    if len(chosen) > size:
        last = results[-1]
        params = {
            key: value
            for key, value in (
                ("created_after", _iso_param(query.created_after)),
                ("created_before", _iso_param(query.created_before)),
            )
            if value is not None
        }
        cursor = base64.urlsafe_b64encode(json.dumps([last.created, last.id]).encode()).decode()
        next_url = f"{url}?{urlencode({**params, 'cursor': cursor})}"
    return {"next": next_url, "previous": None, "results": [render(p) for p in results]}


def _matches(p: Prediction, query: ListQuery) -> bool:
    if query.created_after is not None and p.created < query.created_after:
        return False
    if query.created_before is not None and p.created >= query.created_before:
        return False
    return query.after is None or (p.created, p.id) < query.after


def _iso_param(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
