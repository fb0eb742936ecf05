"""The create endpoints' request handling: the JSON body read and validated in one step, the
answer serialised once.

A create endpoint is declared as FastAPI documents it, ``async def create(body: Model, caller:
CallerDep)`` (plus the router's ``get_principal`` and the route's ``require_json``), so its
OpenAPI description is FastAPI's own. :class:`JsonBodyRoute` answers its requests without
FastAPI's general machinery (a dependency graph solved per request, the body decoded to Python
and validated as a second step, the returned model validated again before it is serialised):

- the raw body goes to ``Model.model_validate_json``, one pass in pydantic's core (a body whose
  bytes show every string storable, ``api/wire.py``, is not walked for that again);
- the endpoint's dependencies run in the order FastAPI runs them (``open_caller``): the
  parameters' storability (the app's dependency), the API key, the Content-Type;
- a returned model is serialised straight to JSON bytes (``response_model_exclude_none`` as
  declared); a returned ``Response`` is sent as it is; returned ``bytes`` are the model's JSON
  already (built without the models: the endpoint's tests hold them to the model's).

Errors are FastAPI's, unchanged: a body that does not parse or validate in one step is decoded
and validated again as FastAPI does (``json.loads``, then the model), so the 400 says exactly
what it said before (an undecodable body before the key is checked; a missing or invalid field
after it). Any other dependency on such a route is refused when the route is built.

Once FastAPI's routing has brought one request to such a route, ``api/edge.py`` sends the next
ones for the same ``POST`` path straight to it (:class:`DirectRoute`): the same handler and the
same exception handlers, without the layers between (the exception middleware, the router's
matching, FastAPI's per-request wrapper). A successful answer is sent as its two ASGI messages
with the headers ``Response`` would give it.
"""

from __future__ import annotations

import contextlib
import email.message
import json
import typing
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fastapi import HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from imagegen.api.deps import (
    Caller,
    get_caller,
    get_principal,
    open_caller,
    require_json,
    storable_parameters,
)
from imagegen.api.wire import STORABLE, storable_json
from imagegen.errors import InvalidRequest

Endpoint = Callable[[Any, Caller], Coroutine[Any, Any, Any]]
#: The dependencies a ``JsonBodyRoute`` runs itself (``open_caller``), in FastAPI's order.
KNOWN_DEPENDENCIES = frozenset({storable_parameters, get_principal, require_json, get_caller})


class JsonBodyRoute(APIRoute):
    """An ``APIRoute`` for ``async def endpoint(body: Model, caller: CallerDep)``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        unknown = {call for call in _calls(self.dependant) if call not in KNOWN_DEPENDENCIES}
        if unknown:
            raise TypeError(f"{self.path}: JsonBodyRoute does not run {unknown}")
        model = typing.get_type_hints(self.endpoint)["body"]
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{self.path}: the body must be one pydantic model")
        answer = TypeAdapter(self.response_model) if self.response_model else None
        return json_handler(
            self.endpoint, model, answer, exclude_none=self.response_model_exclude_none
        )


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def json_handler(
    endpoint: Endpoint,
    model: type[BaseModel],
    answer: TypeAdapter[Any] | None,
    *,
    exclude_none: bool = False,
) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    """The request handler of one create endpoint."""
    run = json_answer(endpoint, model, answer, exclude_none=exclude_none)

    async def handle(request: Request) -> Response:
        scope = request.scope
        if DIRECT in scope:  # the edge asks which handler FastAPI chose for this path
            scope[DIRECT] = run
        result = await run(request)
        if isinstance(result, bytes):
            return Response(content=result, media_type="application/json")
        return result

    return handle


Answer = Callable[[Request], Coroutine[Any, Any, "Response | bytes"]]
"""A create endpoint's handling: a ``Response`` to send, or a 200's JSON body."""


def json_answer(
    endpoint: Endpoint,
    model: type[BaseModel],
    answer: TypeAdapter[Any] | None,
    *,
    exclude_none: bool = False,
) -> Answer:
    """What ``json_handler`` answers, a successful model's answer left as its JSON bytes."""

    async def run(request: Request) -> Response | bytes:
        try:
            raw = await read_body(request)
        except HTTPException:
            raise  # the body limit's 413, a stalled body's 408
        except Exception as exc:
            raise HTTPException(400, PARSE_ERROR) from exc
        content_type = request.headers.get("content-type")
        body: BaseModel | None = None
        if raw and content_type == "application/json":
            # A body that fails here is told below, in FastAPI's words and order.
            with contextlib.suppress(ValidationError, InvalidRequest):
                context = STORABLE if storable_json(raw) else None  # else its strings are walked
                body = model.model_validate_json(raw, context=context)
        if body is None:
            value = _decoded(raw, content_type)  # undecodable JSON: a 400 before anything else
            caller = await open_caller(request)
            body = _validated(model, value)
        else:
            caller = await open_caller(request)
        result = await endpoint(body, caller)
        if isinstance(result, Response | bytes) or answer is None:
            return typing.cast(Response | bytes, result)
        return answer.dump_json(result, exclude_none=exclude_none)

    return run


async def read_body(request: Request) -> bytes:
    """The request body, as ``Request.body()`` reads it (kept on the request as it keeps it),
    from ``receive`` itself: one message for a body that came whole."""
    receive = request.receive
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if not message.get("more_body", False):
                body = b"".join((*chunks, chunk)) if chunks else chunk
                break
            if chunk:
                chunks.append(chunk)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
    request._body = body  # what ``Request.body()`` answers from now on
    return body


DIRECT = "imagegen.direct"
"""The scope key through which a ``JsonBodyRoute`` names its handler to the edge."""
JSON_HEADERS = (b"content-type", b"application/json")


class DirectRoute:
    """A ``JsonBodyRoute``'s handling as an ASGI app, for the edge to call without FastAPI's
    layers: ``scope`` gets what routing gives it (``route``, ``endpoint``, ``path_params``,
    ``router``, the exception handlers), and an exception is handled by the app's handler for
    it as ``ExceptionMiddleware`` and FastAPI's per-route wrapper would (any other propagates,
    to the server error middleware, as before)."""

    __slots__ = ("endpoint", "handlers", "route", "router", "run")

    def __init__(self, run: Answer, scope: Scope) -> None:
        self.run = run
        self.route = scope["route"]
        self.endpoint = scope.get("endpoint")
        self.router = scope.get("router")
        self.handlers: tuple[dict[Any, Any], dict[int, Any]] = scope["starlette.exception_handlers"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.route
        scope["endpoint"] = self.endpoint
        scope["path_params"] = {}
        scope["router"] = self.router
        scope["starlette.exception_handlers"] = self.handlers
        request = Request(scope, receive, send)
        try:
            result = await self.run(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            if is_async_callable(handler):
                response = await handler(request, exc)
            else:
                response = await run_in_threadpool(handler, request, exc)
            if response is not None:
                await response(scope, receive, send)
            exc.__traceback__ = None  # as Starlette: a reused exception keeps no traceback
            return
        try:
            if isinstance(result, bytes):
                length = (b"content-length", str(len(result)).encode("latin-1"))
                start = {"type": "http.response.start", "status": 200}
                start["headers"] = [length, JSON_HEADERS]
                await send(start)
                await send({"type": "http.response.body", "body": result})
            else:
                await result(scope, receive, send)
        except Exception as exc:
            if self._handler(exc) is None:
                raise
            raise RuntimeError("Caught handled exception, but response already started.") from exc

    def _handler(self, exc: Exception) -> Any:
        """The app's handler for ``exc``, found as Starlette finds it; None when it has none."""
        exception_handlers, status_handlers = self.handlers
        if isinstance(exc, StarletteHTTPException):
            handler = status_handlers.get(exc.status_code)
            if handler is not None:
                return handler
        for cls in type(exc).__mro__:
            if cls in exception_handlers:
                return exception_handlers[cls]
        return None


_UNDEFINED = object()
PARSE_ERROR = "There was an error parsing the body"  # FastAPI's words


def _decoded(raw: bytes, content_type: str | None) -> Any:
    """The body as FastAPI decodes it: JSON for a JSON media type, else the bytes; nothing
    for an empty body."""
    if not raw:
        return _UNDEFINED
    if not content_type:
        return raw
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    if message.get_content_maintype() != "application" or not (
        subtype == "json" or subtype.endswith("+json")
    ):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error], body=exc.doc) from exc
    except Exception as exc:  # not text in a JSON encoding, or nested past Python's limit
        raise HTTPException(400, PARSE_ERROR) from exc


def _validated(model: type[BaseModel], value: Any) -> BaseModel:
    """``value`` validated as FastAPI validates a required body (its errors under ``body``)."""
    if value is _UNDEFINED:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing], body=None)
    try:
        return model.model_validate(value, from_attributes=True)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)
        ]
        raise RequestValidationError(errors, body=value) from None
