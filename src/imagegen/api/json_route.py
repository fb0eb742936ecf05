"""The create endpoints' request handling: the JSON body read and validated in one step, the
answer serialised once.

A create endpoint is declared as FastAPI documents it, ``async def create(body: Model, caller:
CallerDep)`` (plus the router's ``get_principal`` and the route's ``require_json``), so its
OpenAPI description is FastAPI's own. :class:`JsonBodyRoute` answers its requests without
FastAPI's general machinery (a dependency graph solved per request, the body decoded to Python
and validated as a second step, the returned model validated again before it is serialised):

- the raw body goes to ``Model.model_validate_json``, one pass in pydantic's core;
- the endpoint's dependencies run in the order FastAPI runs them (``open_caller``): the
  parameters' storability (the app's dependency), the API key, the Content-Type;
- a returned model is serialised straight to JSON bytes (``response_model_exclude_none`` as
  declared); a returned ``Response`` is sent as it is.

Errors are FastAPI's, unchanged: a body that does not parse or validate in one step is decoded
and validated again as FastAPI does (``json.loads``, then the model), so the 400 says exactly
what it said before (an undecodable body before the key is checked; a missing or invalid field
after it). Any other dependency on such a route is refused when the route is built.
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

from imagegen.api.deps import (
    Caller,
    get_caller,
    get_principal,
    open_caller,
    require_json,
    storable_parameters,
)
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

    async def handle(request: Request) -> Response:
        try:
            raw = await request.body()
        except HTTPException:
            raise  # the body limit's 413, a stalled body's 408
        except Exception as exc:
            raise HTTPException(400, PARSE_ERROR) from exc
        content_type = request.headers.get("content-type")
        body: BaseModel | None = None
        if raw and content_type == "application/json":
            # A body that fails here is told below, in FastAPI's words and order.
            with contextlib.suppress(ValidationError, InvalidRequest):
                body = model.model_validate_json(raw)
        if body is None:
            value = _decoded(raw, content_type)  # undecodable JSON: a 400 before anything else
            caller = await open_caller(request)
            body = _validated(model, value)
        else:
            caller = await open_caller(request)
        result = await endpoint(body, caller)
        if isinstance(result, Response) or answer is None:
            return typing.cast(Response, result)
        content = answer.dump_json(result, exclude_none=exclude_none)
        return Response(content=content, media_type="application/json")

    return handle


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
