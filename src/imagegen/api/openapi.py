"""The OpenAPI description as imagegen really answers: ``install(app, settings)``.

FastAPI's generated schema says two untrue things, corrected here once, after generation:

- every route with parameters documents FastAPI's 422 ``HTTPValidationError``, but imagegen
  answers a request that fails validation with 400 and its own error body (``api/errors.py``):
  ``ErrorResponse`` on seed routes, OpenAI's envelope under ``/v1/``. The 422 entry goes and a 400
  with the right model takes its place; a 422 a route documents itself (a model that makes no
  images, a reused Idempotency-Key) stays.
- the request bounds are settings (``IMAGEGEN_MIN_IMAGES``, ``IMAGEGEN_MAX_SIZE``, ...), checked
  at run time, so the models cannot carry them. They are written into the request schemas here
  (``minimum``, ``maximum``, ``maxLength``, ``pattern``), so what the schema allows is accepted.
  So is whether webhooks are available at all (``IMAGEGEN_WEBHOOK_SECRET``). What the schema
  cannot say: which generation a cursor names, whether a model exists upstream, and (with
  webhooks on) that a webhook URL must not be a private address literal.
- no request string may hold NUL (``"not": {"pattern": "\\x00"}``), which no database stores.
- every route that takes an API key (a dependency on ``get_principal``) documents the 401 it
  answers without a valid one, in the route's error model, even where the route lists no
  other errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from imagegen.api.deps import get_principal
from imagegen.api.openai_schemas import ImageGenerationRequest, OpenAIError
from imagegen.api.schemas import ErrorResponse, GenerateRequest
from imagegen.catalog import PLAIN_NAME, REPLICATE_REF
from imagegen.config import Settings
from imagegen.jobs.webhooks.address import MAX_URL_LENGTH

Schema = dict[str, Any]

VALIDATION_ERROR_DESCRIPTION = (
    "Invalid request: the message (and param, under /v1/) names the field."
)
MAX_SEED = 2**32 - 1
SIZE_DIGITS = 6  # a side of OpenAI's "WxH" has at most this many digits (openai_schemas._SIZE)
# Something besides whitespace: a blank prompt or model is refused. Whitespace as Python's
# ``str.strip`` has it (``\x1c``-``\x1f`` and ``\x85`` too), spelt out: ``\S`` differs
# between Python's and ECMAScript's regular expressions.
NOT_BLANK = r"[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
# http(s)://host, no credentials (``jobs.webhooks.address.check_webhook_url``).
WEBHOOK_URL = r"^\s*[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\s]+([/?#][^\s]*)?\s*$"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
UNAUTHENTICATED_DESCRIPTION = (
    "A missing, malformed, unknown or revoked API key (code invalid_api_key under /v1/)."
)


def install(app: FastAPI, settings: Settings, routers: Iterable[APIRouter] = ()) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) return the corrected description;
    ``routers``: those ``app`` includes, whose routes may take an API key."""
    generate = app.openapi
    authenticated = authenticated_operations(routers)

    def openapi() -> Schema:
        if app.openapi_schema is None:
            app.openapi_schema = document(generate(), settings, authenticated)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def authenticated_operations(routers: Iterable[APIRouter]) -> frozenset[tuple[str, str]]:
    """``(path, method)`` of every operation of ``routers`` that depends on ``get_principal``
    (a router's own dependencies are its routes' too)."""
    return frozenset(
        (route.path_format, method.lower())
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and _needs_principal(route.dependant)
        for method in route.methods or ()
    )


def _needs_principal(dependant: Dependant) -> bool:
    return dependant.call is get_principal or any(
        _needs_principal(sub) for sub in dependant.dependencies
    )


def document(
    schema: Schema, settings: Settings, authenticated: frozenset[tuple[str, str]] = frozenset()
) -> Schema:
    """Correct FastAPI's ``schema`` in place (see the module docstring) and return it;
    ``authenticated``: the ``(path, method)`` operations that take an API key."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, operations in schema.get("paths", {}).items():
        error_model = OpenAIError if path.startswith("/v1/") else ErrorResponse
        for method, operation in operations.items():
            added = _document_validation_errors(operation, error_model)
            if (path, method) in authenticated:
                added = _document_unauthenticated(operation, error_model) or added
            if added:
                _add_component(components, error_model)
    _drop_unused(schema, components, _FASTAPI_VALIDATION)
    for model, fields in _bounds(settings).items():
        properties = components.get(model.__name__, {}).get("properties", {})
        for name, constraints in fields.items():
            if name in properties:
                _constrain(properties[name], constraints)
    if GenerateRequest.__name__ in components:
        _document_webhooks(components[GenerateRequest.__name__], settings)
    _constrain_forms(schema, settings)
    for model in (GenerateRequest, ImageGenerationRequest):
        for prop in components.get(model.__name__, {}).get("properties", {}).values():
            _refuse_nul(prop)
    return schema


#: Routes whose body is a form (described inline, not by a model) checked as a model is.
FORM_BOUNDS: dict[str, type[BaseModel]] = {"/v1/images/edits": ImageGenerationRequest}


def _constrain_forms(schema: Schema, settings: Settings) -> None:
    bounds = _bounds(settings)
    for path, model in FORM_BOUNDS.items():
        for operation in schema.get("paths", {}).get(path, {}).values():
            content = operation.get("requestBody", {}).get("content", {})
            form = content.get("multipart/form-data", {}).get("schema", {})
            properties = form.get("properties", {})
            for name, constraints in bounds[model].items():
                if name in properties:
                    _constrain(properties[name], constraints)
            for prop in properties.values():
                _refuse_nul_in_form(prop)


def _refuse_nul_in_form(prop: Schema) -> None:
    """A form's text fields hold no NUL either: said with an anchored ``pattern`` (schemathesis
    cannot generate negative multipart data from ``not``); files (``binary``), enums and fields
    already held to an anchored pattern need nothing more."""
    if prop.get("type") != "string" or "enum" in prop or prop.get("format") == "binary":
        return
    pattern = prop.get("pattern")
    if pattern is None:
        prop["pattern"] = r"^[^\x00]*$"
    elif pattern == NOT_BLANK:  # some text that is not blank, and no NUL anywhere
        prop["pattern"] = rf"^[^\x00]*{NOT_BLANK[:-1]}\x00][^\x00]*$"


def _refuse_nul(prop: Schema) -> None:
    """Strings may not hold NUL (``api/wire.py``; lone surrogates are not UTF-8 at all)."""
    for branch in prop.get("anyOf", [prop]):
        if branch.get("type") == "string":
            branch["not"] = {"pattern": "\x00"}
        elif branch.get("type") == "array" and branch.get("items", {}).get("type") == "string":
            branch["items"]["not"] = {"pattern": "\x00"}


# --- validation errors -----------------------------------------------------------------------


def _document_validation_errors(operation: Schema, error_model: type[BaseModel]) -> bool:
    """Replace FastAPI's 422 with a 400 of ``error_model``; whether a 400 was added."""
    responses: Schema = operation.get("responses", {})
    default = responses.get("422")
    if default is None or not _refers_to(default, "HTTPValidationError"):
        return False
    del responses["422"]
    added = False
    if "400" not in responses and _can_fail_validation(operation):
        ref = {"$ref": f"#/components/schemas/{error_model.__name__}"}
        responses["400"] = {
            "description": VALIDATION_ERROR_DESCRIPTION,
            "content": {"application/json": {"schema": ref}},
        }
        added = True
    operation["responses"] = dict(sorted(responses.items()))
    return added


def _document_unauthenticated(operation: Schema, error_model: type[BaseModel]) -> bool:
    """Add the 401 an operation that takes an API key answers; whether it was missing."""
    responses: Schema = operation.setdefault("responses", {})
    if "401" in responses:
        return False
    ref = {"$ref": f"#/components/schemas/{error_model.__name__}"}
    responses["401"] = {
        "description": UNAUTHENTICATED_DESCRIPTION,
        "content": {"application/json": {"schema": ref}},
    }
    operation["responses"] = dict(sorted(responses.items()))
    return True


def _can_fail_validation(operation: Schema) -> bool:
    """A body, a query or header parameter, or a path parameter that is more than any string."""
    if "requestBody" in operation:
        return True
    for parameter in operation.get("parameters", []):
        extra = set(parameter.get("schema", {})) - {"type", "title", "description"}
        if parameter.get("in") != "path" or parameter["schema"].get("type") != "string" or extra:
            return True
    return False


def _refers_to(value: Any, component: str) -> bool:
    return f'"#/components/schemas/{component}"' in json.dumps(value)


def _add_component(components: Schema, model: type[BaseModel]) -> None:
    if model.__name__ in components:
        return
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components[model.__name__] = schema


def _drop_unused(schema: Schema, components: Schema, names: tuple[str, ...]) -> None:
    for name in names:  # HTTPValidationError first: it is what refers to ValidationError
        definition = components.pop(name, None)
        if definition is not None and _refers_to(schema, name):
            components[name] = definition  # still used somewhere: keep it


# --- settings-driven bounds ------------------------------------------------------------------


def _bounds(settings: Settings) -> dict[type[BaseModel], dict[str, Schema]]:
    images: Schema = {"minimum": settings.min_images, "maximum": settings.max_images}
    side: Schema = {"minimum": settings.min_size, "maximum": settings.max_size}
    prompt: Schema = {"minLength": 1, "maxLength": settings.max_prompt_length, "pattern": NOT_BLANK}
    common: dict[str, Schema] = {
        "prompt": prompt,
        "negative_prompt": {"maxLength": settings.max_prompt_length},
        "seed": {"minimum": 0, "maximum": MAX_SEED},
        "model": {"pattern": model_name_pattern()},
    }
    return {
        GenerateRequest: {**common, "num_images": images, "width": side, "height": side},
        ImageGenerationRequest: {
            **common,
            "n": images,
            "size": {"pattern": size_pattern(settings.min_size, settings.max_size)},
            "stream": {"enum": [False]},  # streaming is refused with a 400
        },
    }


def _document_webhooks(model: Schema, settings: Settings) -> None:
    """Without a webhook secret, a webhook (or an events filter) is refused: only null is valid.
    With one: an http(s) URL; a filter names at least one event and needs a webhook."""
    properties = model.get("properties", {})
    url, events = properties.get("webhook"), properties.get("webhook_events_filter")
    if url is None or events is None:
        return
    if settings.webhook_secret is None:
        for prop in (url, events):
            prop["anyOf"] = [{"type": "null"}]
            note = "Not available: this server has no IMAGEGEN_WEBHOOK_SECRET."
            prop["description"] = f"{prop.get('description', '')} {note}".strip()
        return
    _constrain(url, {"maxLength": MAX_URL_LENGTH, "pattern": WEBHOOK_URL})
    _constrain(events, {"minItems": 1})
    model["if"] = {
        "required": ["webhook_events_filter"],
        "properties": {"webhook_events_filter": {"type": "array"}},
    }
    model["then"] = {"required": ["webhook"], "properties": {"webhook": {"type": "string"}}}


def _constrain(prop: Schema, constraints: Schema) -> None:
    """Add ``constraints`` to a property, or to each non-null branch of an optional one."""
    branches = prop.get("anyOf")
    targets = [b for b in branches if b.get("type") != "null"] if branches else [prop]
    for target in targets:
        target.update(constraints)


def model_name_pattern() -> str:
    """What ``Catalog.resolve`` reads as a name (else a 400): a catalog name or
    ``owner/name[:version]``, with whitespace around it (it is stripped)."""
    names = "|".join(_unanchored(p.pattern) for p in (REPLICATE_REF, PLAIN_NAME))
    return rf"^\s*(?:{names})\s*$"


def _unanchored(pattern: str) -> str:
    return pattern.removeprefix("^").removesuffix("$")


def size_pattern(low: int, high: int) -> str:
    """OpenAI's ``size`` as imagegen accepts it: ``auto``, or ``WxH`` with each side a decimal of
    at most ``SIZE_DIGITS`` digits (leading zeros allowed) from ``low`` to ``high``."""
    high = min(high, 10**SIZE_DIGITS - 1)
    if low > high:
        return "^auto$"
    side = int_range_pattern(low, high, digits=SIZE_DIGITS)
    return f"^(?:auto|{side}x{side})$"


def int_range_pattern(low: int, high: int, *, digits: int) -> str:
    """A regex group matching the decimals from ``low`` to ``high`` (``0 < low <= high``),
    zero-padded to at most ``digits`` digits in all."""
    alternatives = []
    for length in range(len(str(low)), len(str(high)) + 1):
        first, last = max(low, 10 ** (length - 1)), min(high, 10**length - 1)
        padding = f"0{{0,{digits - length}}}" if digits > length else ""
        alternatives += [padding + part for part in _same_length(str(first), str(last))]
    return f"(?:{'|'.join(alternatives)})"


def _same_length(low: str, high: str) -> list[str]:
    """Patterns that together match the decimals from ``low`` to ``high``, both ``n`` digits."""
    if low == high:
        return [low]
    if len(low) == 1:
        return [_digits(int(low), int(high))]
    if low[0] == high[0]:
        return [low[0] + part for part in _same_length(low[1:], high[1:])]
    rest = len(low) - 1
    parts: list[str] = []
    start, end = int(low[0]), int(high[0])
    if low[1:] != "0" * rest:  # low .. low[0]99..9
        parts += [low[0] + part for part in _same_length(low[1:], "9" * rest)]
        start += 1
    tail: list[str] = []
    if high[1:] != "9" * rest:  # high[0]00..0 .. high
        tail = [high[0] + part for part in _same_length("0" * rest, high[1:])]
        end -= 1
    if start <= end:
        parts.append(f"{_digits(start, end)}[0-9]{{{rest}}}")
    return parts + tail


def _digits(start: int, end: int) -> str:
    return str(start) if start == end else f"[{start}-{end}]"
