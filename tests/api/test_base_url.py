"""``request_base_url`` is Starlette's ``request.base_url`` (less its trailing slash), however
the request names its host."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from imagegen.api.deps import request_base_url


def scope(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "type": "http",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "path": "/api/v1/images/generate",
        "root_path": "",
        "query_string": b"a=1",
        "headers": [(b"host", b"images.example:8000"), (b"accept", b"*/*")],
    }
    values.update(changes)
    return values


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"scheme": "https", "headers": [(b"host", b"images.example")]},
        {"headers": []},
        {"headers": [], "server": ["::1", 8080]},
        {"headers": [], "server": ("example.org", 80)},
        {"headers": [], "server": None},
        {"headers": [(b"host", b"bad host:x")]},
        {"headers": [(b"host", b"[::1]:9000"), (b"host", b"second")]},
        {"root_path": "/imagegen"},
        {"root_path": "/imagegen", "app_root_path": "/outer"},
    ],
)
def test_as_starlette_has_it(changes: dict[str, Any]) -> None:
    seen = scope(**changes)
    assert request_base_url(seen) == str(Request(seen).base_url).rstrip("/")
    assert request_base_url(seen) == request_base_url(dict(seen))  # the cached answer
