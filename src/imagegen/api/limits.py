"""A pure-ASGI middleware that refuses request bodies over ``IMAGEGEN_MAX_BODY_BYTES`` with 413,
in the endpoint's own error shape, before they are buffered.

A declared ``Content-Length`` over the limit is answered at once, unread. A body without one
(chunked) is counted as it arrives: the read that passes the limit raises ``HTTPException(413)``,
which the app's error handlers render, so at most the limit (plus one chunk) is ever held.
Either way the connection is closed after the 413, so the rest of the body is never read.

A body that stalls (a client that pauses more than ``IMAGEGEN_BODY_TIMEOUT`` seconds between
two pieces of it) is a 408: a slow upload cannot hold a connection for ever.
"""

from __future__ import annotations

import asyncio

from fastapi import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegen.api.errors import error_response


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, pause: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.pause = pause

    def message(self) -> str:
        return f"request body: larger than this server accepts ({self.max_bytes} bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = error_response(Request(scope), 413, self.message())
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        received = 0
        refused = False
        complete = False

        async def counted_receive() -> Message:
            nonlocal received, refused, complete
            if complete:  # later reads wait for a disconnect, for as long as a request runs
                return await receive()
            try:
                async with asyncio.timeout(self.pause):
                    message = await receive()
            except TimeoutError:
                refused = True
                raise HTTPException(408, "request body: not received in time") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    refused = True
                    raise HTTPException(413, self.message())
            return message

        async def send_closing(message: Message) -> None:
            if refused and message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, counted_receive, send_closing)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we see it
    return None
