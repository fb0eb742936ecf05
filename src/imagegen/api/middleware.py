"""A request's id: every response gets an ``x-request-id`` (echoing a client's, when it is safe
to log). ``api/edge.py`` sets it; the request's log line, metrics and ``Server-Timing`` come
from ``api/observe.py``."""

from __future__ import annotations

import os
import re

from starlette.types import Scope

_SAFE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id(scope: Scope) -> bytes:
    """The client's ``x-request-id`` when it is safe, else a fresh ``req_<hex>``."""
    return _incoming_id(scope) or b"req_" + os.urandom(16).hex().encode()


def _incoming_id(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id" and _SAFE_ID.match(value):
            return bytes(value)
    return None
