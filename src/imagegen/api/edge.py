"""The one pure-ASGI layer every HTTP request passes through, doing in a single step what would
otherwise be three nested middlewares (each with its own ``send`` wrapper and header copy):

- its request id (``api/middleware.py``): an ``x-request-id`` on every response, echoing a
  client's safe one, in ``scope["state"]["request_id"]`` and the log context;
- what it leaves behind (``api/observe.py``): ``Server-Timing``, its Prometheus sample, one
  ``imagegen.access`` log line;
- its body limit (``api/limits.py``): 413 past ``IMAGEGEN_MAX_BODY_BYTES`` (declared or
  counted), 408 for a stalled body, the connection closed after either.

A 413 or 408 is observed and logged like any other response, and carries the request id.

The create endpoints (``api/json_route.py``) are served from here: once FastAPI's routing has
brought a ``POST`` to one, the edge sends the next ones for that exact path straight to the
handler it chose (a :class:`DirectRoute`), past the exception middleware, the router and
FastAPI's per-request wrapper, with the same exception handlers. It does so only where routing
is the same for every such request: no ``root_path``, no FastAPI telemetry on the request, and a
route without path parameters.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegen.api.errors import error_response
from imagegen.api.json_route import DIRECT, DirectRoute
from imagegen.api.limits import BodyCounter, content_length, too_large
from imagegen.api.middleware import new_request_id
from imagegen.api.observe import observed, server_timing
from imagegen.jobs.observe import RequestTiming, request_timing
from imagegen.logs import log_context

_CLOSE = (b"connection", b"close")
TELEMETRY = "fastapi.telemetry"  # FastAPI's own telemetry records the route it matched


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, pause: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.pause = pause
        self.direct: dict[str, DirectRoute] = {}  # POST path -> its create endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = new_request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id.decode()
        timing = RequestTiming()
        timing_token = request_timing.set(timing)
        context_token = log_context.set({"request_id": state["request_id"], "key_name": None})
        body = BodyCounter(receive, self.max_bytes, self.pause)
        status = 500

        async def send_edge(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if body.refused:
                    headers.append(_CLOSE)
                total = time.perf_counter() - started
                headers.append((b"server-timing", server_timing(total, timing.upstream)))
                headers.append((b"x-request-id", request_id))
                message["headers"] = headers
            await send(message)

        try:
            declared = content_length(scope)
            if declared is not None and declared > self.max_bytes:
                response = error_response(Request(scope), 413, too_large(self.max_bytes))
                response.headers["connection"] = "close"
                await response(scope, receive, send_edge)
            elif not _direct_candidate(scope):
                await self.app(scope, body.receive, send_edge)
            elif (direct := self.direct.get(scope["path"])) is not None:
                await direct(scope, body.receive, send_edge)
            else:
                scope[DIRECT] = None  # a create endpoint's handler names itself here
                try:
                    await self.app(scope, body.receive, send_edge)
                finally:
                    self._learn(scope)
        finally:
            observed(scope, state, status, time.perf_counter() - started)
            request_timing.reset(timing_token)
            log_context.reset(context_token)

    def _learn(self, scope: Scope) -> None:
        """Remember the create endpoint FastAPI's routing chose for this ``POST`` path."""
        run = scope.pop(DIRECT, None)
        if run is None or scope.get("path_params") or "starlette.exception_handlers" not in scope:
            return
        route = scope.get("route")
        if getattr(route, "path", None) != scope["path"] or "POST" not in getattr(
            route, "methods", ()
        ):
            return
        self.direct[scope["path"]] = DirectRoute(run, scope)


def _direct_candidate(scope: Scope) -> bool:
    """A request whose route depends on its method and path alone (``DirectRoute``)."""
    return scope["method"] == "POST" and not scope.get("root_path") and TELEMETRY not in scope
