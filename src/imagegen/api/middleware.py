"""Pure-ASGI middlewares: every response gets an ``x-request-id`` (echoing a client's), and
every request a log line."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or f"req_{uuid.uuid4().hex}".encode()
        scope.setdefault("state", {})["request_id"] = request_id.decode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


def _incoming_id(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id" and _SAFE_ID.match(value):
            return bytes(value)
    return None


access_log = logging.getLogger("imagegen.access")


class RequestLogMiddleware:
    """One ``info`` line per request: method, path, status, duration and request id, and the
    name of the API key when one is recorded (``scope["state"]["key_name"]``). Never the query
    string (it may carry a token) nor any header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                _log_request(scope, status, time.perf_counter() - started)


def _log_request(scope: Scope, status: int, seconds: float) -> None:
    state = scope.get("state", {})
    key_name = state.get("key_name")
    access_log.info(
        "%s %s %d %.1fms %s%s",
        scope["method"],
        scope["path"],
        status,
        seconds * 1000,
        state.get("request_id", "-"),
        f" key={key_name}" if key_name else "",
    )
