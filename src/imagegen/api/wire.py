"""What a string from the wire must be to be stored: text that both databases keep as sent.

A lone surrogate (``"\\ud800"``, legal in JSON's escapes but not in UTF-8) cannot be encoded,
and PostgreSQL refuses NUL (``"\\u0000"``) in ``text`` and ``jsonb``. One check, applied to every
string that comes in (each JSON body whole, keys included, before its model validates it; every
path and query parameter), refuses both with a 400 naming the field, so nothing that cannot be
stored, logged or sent back reaches the core.

A JSON text can hold either only as a ``\\u`` escape: its parser refuses a raw NUL (a control
character) and bytes that are not UTF-8 (a surrogate's). A body read as raw JSON without one
(``storable_json``) is validated with ``STORABLE`` as its context, and its strings are not
walked again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationInfo, model_validator

from imagegen.errors import InvalidRequest

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: Validation context of a body whose raw JSON ``storable_json`` cleared.
STORABLE: Mapping[str, Any] = {"imagegen.storable": True}


def storable_json(raw: bytes) -> bool:
    """Whether every string a JSON text ``raw`` may hold is storable, from its bytes alone: true
    when it has no ``\\u`` escape (and no NUL byte, which its parser refuses anyway)."""
    return b"\\u" not in raw and b"\x00" not in raw


def problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found[0] == "\x00":
        return "must not contain NUL characters"
    return "must be valid Unicode text (no lone surrogates such as \\ud800)"


def check_value(value: Any, field: str) -> None:
    """Raise ``InvalidRequest`` naming the first string under ``value`` that cannot be stored."""
    if isinstance(value, str):
        reason = problem(value)
        if reason is not None:
            raise InvalidRequest(f"{field}: {reason}", field=field)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and problem(key) is not None:
                raise InvalidRequest(f"{field}: a field name {problem(key)}", field=field)
            check_value(item, f"{field}.{key}" if field != "body" else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_value(item, f"{field}.{index}" if field != "body" else str(index))


def check_parameters(parameters: Iterable[tuple[str, str]]) -> None:
    """Path or query parameters: each name and value must be storable."""
    for name, value in parameters:
        reason = problem(name)
        if reason is not None:
            raise InvalidRequest(f"a parameter name {reason}")
        check_value(value, name)


class WireModel(BaseModel):
    """A request body: every string in it, at any depth, is checked before the fields are."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is not STORABLE:
            check_value(data, "body")
        return data
