"""Request bodies over ``IMAGEGEN_MAX_BODY_BYTES`` are refused with 413, in the endpoint's own
error shape, before they are buffered (``api/edge.py`` applies this to every request).

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
from starlette.types import Message, Receive, Scope


def too_large(max_bytes: int) -> str:
    return f"request body: larger than this server accepts ({max_bytes} bytes)"


class BodyCounter:
    """The app's ``receive``: counts the body against ``max_bytes``, each read bounded by
    ``pause`` seconds; ``refused`` once it answered 413 or 408 (the connection is then closed)."""

    __slots__ = ("_receive", "complete", "max_bytes", "pause", "received", "refused")

    def __init__(self, receive: Receive, max_bytes: int, pause: float) -> None:
        self._receive = receive
        self.max_bytes = max_bytes
        self.pause = pause
        self.received = 0
        self.refused = False
        self.complete = False

    async def receive(self) -> Message:
        if self.complete:  # later reads wait for a disconnect, for as long as a request runs
            return await self._receive()
        try:
            async with asyncio.timeout(self.pause):
                message = await self._receive()
        except TimeoutError:
            self.refused = True
            raise HTTPException(408, "request body: not received in time") from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
            if self.received > self.max_bytes:
                self.refused = True
                raise HTTPException(413, too_large(self.max_bytes))
        return message


def content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we see it
    return None
