"""The ASGI middleware that counts requests per route class and plays scripted response faults.

Connection faults need the socket: under uvicorn (thread or process mode) the transport is
reached through the ``receive`` callable's owner; elsewhere they fall back to raising.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from tests.fakes.replicate import problems
from tests.fakes.replicate.faults import OVERSIZE_BODY, FaultSpec

if TYPE_CHECKING:
    from tests.fakes.replicate.state import DoubleState

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/v1/predictions/?$"), "create"),
    ("POST", re.compile(r"^/v1/(models|deployments)/[^/]+/[^/]+/predictions/?$"), "create"),
    ("GET", re.compile(r"^/v1/predictions/?$"), "list"),
    ("GET", re.compile(r"^/v1/predictions/[^/]+/?$"), "get"),
    ("POST", re.compile(r"^/v1/predictions/[^/]+/cancel/?$"), "cancel"),
    ("GET", re.compile(r"^/v1/models/[^/]+/[^/]+/?$"), "model"),
    ("GET", re.compile(r"^/v1/models/[^/]+/[^/]+/versions(/[^/]+)?/?$"), "version"),
    ("GET", re.compile(r"^/delivery/"), "file"),
    ("HEAD", re.compile(r"^/delivery/"), "file"),
]

HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad "
    b"Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)
HTML_504 = b"<html><body><h1>504 Gateway Time-out</h1>upstream request timeout</body></html>\n"
TRUNCATED_JSON = b'{"id":"qzrtf3bcz5rj00cjb2zvqg1xbm","model":"black-forest-labs/flux-schn'


def classify(method: str, path: str) -> str:
    """The route class of a request: create | list | get | cancel | model | version | file |
    other."""
    for route_method, pattern, name in _ROUTES:
        if method == route_method and pattern.match(path):
            return name
    return "other"


class FaultMiddleware:
    def __init__(self, app: ASGIApp, state: DoubleState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_double"):
            await self.app(scope, receive, send)
            return
        route = classify(scope["method"], scope["path"])
        self.state.count_request(route)
        spec = self.state.faults.take_response(route)
        if spec is None:
            await self.app(scope, receive, send)
        else:
            await _play(spec, route, self.app, scope, receive, send)


async def _play(
    spec: FaultSpec, route: str, app: ASGIApp, scope: Scope, receive: Receive, send: Send
) -> None:
    name = spec.fault
    if name == "slow":
        await asyncio.sleep(2.0 if spec.seconds is None else spec.seconds)
        await app(scope, receive, send)
    elif name == "hang":
        await _hang(receive, 3600.0 if spec.seconds is None else spec.seconds)
    elif name == "stall_body":
        await app(scope, receive, _stalling(send, 2.0 if spec.seconds is None else spec.seconds))
    elif name == "reset_connection":
        await _reset(spec, route, receive, send)
    elif name == "oversize_body":
        await _oversize(spec, route)(scope, receive, send)
    elif name == "lose_reply":
        await app(scope, receive, _swallow)  # handled: a create makes its prediction
        await _abort(receive)
    else:
        await canned_response(spec, route)(scope, receive, send)


def canned_response(spec: FaultSpec, route: str) -> Response:
    """The fixed response a fault name (or a ``status`` spec) stands for."""
    name = spec.fault
    if name == "rate_limit":
        return problems.throttled(1 if spec.retry_after is None else spec.retry_after)
    if name == "insufficient_credit":
        return problems.insufficient_credit()
    if name == "malformed_json":
        status = 201 if route == "create" else 200
        return Response(TRUNCATED_JSON, status, media_type=problems.JSON_TYPE)
    if name == "html_502":
        return Response(HTML_502, 502, media_type="text/html")
    if name == "empty_500":
        return Response(b"", 500)
    if name == "json_500":
        return problems.problem(500, {"detail": "Internal Server Error", "status": 500})
    if name == "unavailable_503":
        return problems.problem(503, {"detail": "Service Unavailable", "status": 503})
    if name == "timeout_504":
        return Response(HTML_504, 504, media_type="text/html")
    return _custom(spec)


def _custom(spec: FaultSpec) -> Response:
    status = spec.status or 500
    if spec.body is None:
        content, media = b"", spec.content_type
    elif isinstance(spec.body, str):
        content, media = spec.body.encode(), spec.content_type or "text/plain; charset=utf-8"
    else:
        default = problems.PROBLEM_TYPE if status >= 400 else problems.JSON_TYPE
        content, media = problems.dumps(spec.body), spec.content_type or default
    return Response(content, status, spec.headers, media_type=media)


def _oversize(spec: FaultSpec, route: str) -> Response:
    """A JSON body of ``spec.size`` bytes, produced 64 KiB at a time (never held whole), that
    stops when the client goes away."""
    size = OVERSIZE_BODY if spec.size is None else spec.size
    head, tail = b'{"id":"oversize","status":"processing","logs":"', b'"}'
    filler = max(0, size - len(head) - len(tail))

    async def body() -> AsyncIterator[bytes]:
        yield head
        left = filler
        while left > 0:
            chunk = min(left, len(_FILLER))
            yield _FILLER[:chunk]
            left -= chunk
        yield tail

    headers = {} if spec.chunked else {"content-length": str(len(head) + filler + len(tail))}
    status = 201 if route == "create" else 200
    return StreamingResponse(body(), status, headers, media_type=problems.JSON_TYPE)


_FILLER = b"x" * 65536


async def _swallow(message: Message) -> None:
    return None


def _stalling(send: Send, seconds: float) -> Send:
    stalled = False

    async def stalling_send(message: Message) -> None:
        nonlocal stalled
        if message["type"] != "http.response.body" or stalled:
            await send(message)
            return
        stalled = True
        body: bytes = message.get("body", b"")
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )
        await asyncio.sleep(seconds)
        await send({**message, "body": body[len(body) // 2 :]})

    return stalling_send


async def _hang(receive: Receive, seconds: float) -> None:
    async def until_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(until_disconnect(), seconds)
    except TimeoutError:
        await _abort(receive)


async def _reset(spec: FaultSpec, route: str, receive: Receive, send: Send) -> None:
    if spec.when == "mid_body":
        status = 201 if route == "create" else 200
        headers = [(b"content-type", problems.JSON_TYPE.encode()), (b"content-length", b"400")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": TRUNCATED_JSON, "more_body": True})
        await asyncio.sleep(0.05)  # let the partial body reach the client first
    await _abort(receive)


async def _abort(receive: Receive) -> None:
    transport: Any = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionResetError("replicate double: scripted connection reset")
    transport.abort()
    for _ in range(3):  # let uvicorn see connection_lost before the app returns
        await asyncio.sleep(0)
