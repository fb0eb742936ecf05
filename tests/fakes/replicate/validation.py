"""Request validation with Replicate's (gojsonschema) wording: ``invalid_fields`` and ``detail``.

Two layers, as the real API: the envelope (``additionalProperties: false``; ``version`` and
``input`` required) and then ``input`` against the model version's ``Input`` schema (required,
type, enum, minimum/maximum, multipleOf, format uri). Unknown *input* keys are accepted, as
Cog's schemas do not forbid them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from tests.fakes.replicate_models import ModelSpec

ENVELOPE_FIELDS = {
    "version": "string",
    "input": "object",
    "webhook": "string",
    "webhook_events_filter": "array",
    "stream": "boolean",
    # Legacy, still accepted by the real API (it echoes ``webhook_completed`` in old bodies).
    "webhook_completed": "string",
}
WEBHOOK_EVENTS = ["start", "output", "logs", "completed"]


@dataclass(frozen=True)
class InvalidField:
    type: str
    field: str
    description: str

    def line(self) -> str:
        prefix = f"{self.field}: " if self.field else ""
        return f"- {prefix}{self.description}\n"


def detail_text(fields: Sequence[InvalidField]) -> str:
    return "".join(f.line() for f in fields)


def json_type(value: Any) -> str:
    """gojsonschema's name for a JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(expected: str, value: Any) -> bool:
    given = json_type(value)
    return given == expected or (expected == "number" and given == "integer")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _type_error(field: str, expected: str, value: Any) -> InvalidField:
    desc = f"Invalid type. Expected: {expected}, given: {json_type(value)}"
    return InvalidField("invalid_type", field, desc)


def validate_envelope(body: Any, *, needs_version: bool) -> list[InvalidField]:
    """The request-body schema of ``POST /v1/predictions`` (or of the model/deployment routes)."""
    if not isinstance(body, dict):
        return [_type_error("", "object", body)]
    errors: list[InvalidField] = []
    required = ["version", "input"] if needs_version else ["input"]
    errors += [InvalidField("required", "", f"{k} is required") for k in required if k not in body]
    allowed = dict(ENVELOPE_FIELDS)
    if not needs_version:
        del allowed["version"]
    for key, value in body.items():
        if key not in allowed:
            desc = f"Additional property {key} is not allowed"
            errors.append(InvalidField("additional_property_not_allowed", "", desc))
        elif not _type_ok(allowed[key], value):
            errors.append(_type_error(key, allowed[key], value))
        elif key == "webhook_events_filter":
            errors += _enum_items(key, value, WEBHOOK_EVENTS)
    return errors


def _enum_items(field: str, values: list[Any], allowed: list[str]) -> list[InvalidField]:
    choices = ", ".join(json.dumps(a) for a in allowed)
    return [
        InvalidField("enum", f"{field}.{i}", f"{field}.{i} must be one of the following: {choices}")
        for i, value in enumerate(values)
        if value not in allowed
    ]


def validate_input(model: ModelSpec, given: Mapping[str, Any]) -> list[InvalidField]:
    """``input`` against the model's ``Input`` schema, in the real API's error order."""
    schema = model.input_schema
    errors = [
        InvalidField("required", "input", f"{name} is required")
        for name in schema.get("required", [])
        if name not in given
    ]
    properties: Mapping[str, Any] = schema["properties"]
    for key, value in given.items():
        prop = properties.get(key)
        if prop is not None:
            errors += _check_property(model, key, prop, value)
    return errors


def _check_property(
    model: ModelSpec, key: str, prop: Mapping[str, Any], value: Any
) -> list[InvalidField]:
    field = f"input.{key}"
    choices = model.enum_values(prop)
    expected = prop.get("type", "string" if choices is not None else None)
    if expected is not None and not _type_ok(expected, value):
        return [_type_error(field, expected, value)]
    if choices is not None and value not in choices:
        listed = ", ".join(json.dumps(c) for c in choices)
        return [InvalidField("enum", field, f"{key} must be one of the following: {listed}")]
    errors: list[InvalidField] = []
    if "minimum" in prop and value < prop["minimum"]:
        desc = f"Must be greater than or equal to {_number(prop['minimum'])}"
        errors.append(InvalidField("number_gte", field, desc))
    if "maximum" in prop and value > prop["maximum"]:
        desc = f"Must be less than or equal to {_number(prop['maximum'])}"
        errors.append(InvalidField("number_lte", field, desc))
    if "multipleOf" in prop and value % prop["multipleOf"] != 0:
        desc = f"Must be a multiple of {_number(prop['multipleOf'])}"
        errors.append(InvalidField("multiple_of", field, desc))
    if prop.get("format") == "uri" and not _is_uri(value):
        errors.append(InvalidField("format", field, "Does not match format 'uri'"))
    return errors


def _is_uri(value: str) -> bool:
    parsed = urlparse(value)
    return bool(parsed.scheme) and bool(parsed.netloc or parsed.scheme == "data")
