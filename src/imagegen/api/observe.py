"""What every request leaves behind: its ``Server-Timing`` header (imagegen's own time and the
upstream's), its Prometheus sample (method, route template, status, latency), and one log line
(``imagegen.access``) with request id and key name. ``api/edge.py`` calls these for every
request; the key dependency sets ``scope["state"]["key_name"]`` and the log context's
``key_name``.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.routing import Match
from starlette.types import Scope

from imagegen.metrics import Metrics

log = logging.getLogger("imagegen.access")


def observed(scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
    """The request's metrics sample and its access log line."""
    route = route_of(scope)
    metrics = _metrics(scope)
    if metrics is not None:
        metrics.request(scope["method"], route, status, seconds)
    if not log.isEnabledFor(logging.INFO):
        return
    key_name = state.get("key_name")
    log.info(
        "%s %s %d %.1fms %s%s",
        scope["method"],
        scope["path"],
        status,
        seconds * 1000,
        state.get("request_id", "-"),
        f" key={key_name}" if key_name else "",
        extra={
            "method": scope["method"],
            "path": scope["path"],
            "route": route,
            "status_code": status,
            "duration_ms": round(seconds * 1000, 3),
            "key_name": key_name,
        },
    )


def _metrics(scope: Scope) -> Metrics | None:
    services = getattr(getattr(scope.get("app"), "state", None), "services", None)
    metrics = getattr(services, "metrics", None)
    return metrics if isinstance(metrics, Metrics) else None


def server_timing(total: float, upstream: float) -> bytes:
    """``imagegen`` is imagegen's own time (the whole request less the upstream's)."""
    own = max(0.0, total - upstream)
    return f"imagegen;dur={own * 1000:.1f}, upstream;dur={upstream * 1000:.1f}".encode()


def route_of(scope: Scope) -> str:
    """The matched route's template (``/api/v1/generations/{generation_id}``), never the raw
    path; ``unmatched`` for a 404 outside every route."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return str(getattr(candidate, "path", "unmatched"))
    return "unmatched"
