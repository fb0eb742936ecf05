"""keys: what API keys and metrics add to each request, measured in-process.

The same request (a scope, a ``Request``, an ASGI app that answers 200) runs many times, bare
and then the way imagegen serves every request: through ``EdgeMiddleware`` (Server-Timing,
the Prometheus sample, the access-log call) with the key dependency (``get_principal``: the
Bearer header parsed, the secret hashed, the key found in the per-replica cache). The added cost
is the difference of the means. The key cache misses once a second per key (one indexed read);
that read is not in the figure. With the access log written (INFO, JSON to /dev/null) it is
measured again, for context: the log line is not part of the key checks and metrics.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from starlette.requests import Request

from bench.common import Options
from bench.report import Result

NAME = "keys"
TARGET = 0.0002


async def _app_ok(scope: Any, receive: Any, send: Any) -> None:
    Request(scope)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _setup() -> tuple[Any, Any, Any]:
    from imagegen.api.deps import get_principal
    from imagegen.api.edge import EdgeMiddleware
    from imagegen.auth.authenticator import Authenticator
    from imagegen.auth.keys import ApiKey, KeyLimits, hash_secret, new_secret
    from imagegen.metrics import Metrics

    secret = new_secret()
    key = ApiKey("key_bench", "bench", secret[:10], False, KeyLimits(rpm=1000), datetime.now(UTC))

    class Keys:
        async def find(self, value: str) -> ApiKey | None:
            return key if hash_secret(value) == hash_secret(secret) else None

        async def active_count(self) -> int:
            return 1

        async def touch(self, used: dict[str, datetime]) -> None:
            return None

    services = SimpleNamespace(
        auth=Authenticator(
            Keys(), anonymous_allowed=False, cache_seconds=3600, clock=lambda: datetime.now(UTC)
        ),
        metrics=Metrics(),
    )
    app = SimpleNamespace(state=SimpleNamespace(services=services))

    async def keyed_app(scope: Any, receive: Any, send: Any) -> None:
        await get_principal(Request(scope))
        await _app_ok(scope, receive, send)

    headers = [(b"authorization", f"Bearer {secret}".encode())]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/generations",
        "headers": headers,
        "query_string": b"",
        "app": app,
        "route": SimpleNamespace(path="/api/v1/generations"),
    }
    return EdgeMiddleware(keyed_app, max_bytes=1 << 20), scope, _app_ok


async def _time(app: Any, scope: Any, n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        await app(dict(scope, state={}), receive, send)
    return (time.perf_counter() - started) / n


async def measure(n: int) -> tuple[float, float, float]:
    """(bare, with keys and metrics, with keys, metrics and the access log line) per request."""
    keyed, scope, bare = _setup()
    access = logging.getLogger("imagegen.access")
    access.setLevel(logging.WARNING)
    await _time(bare, scope, n // 10)
    await _time(keyed, scope, n // 10)
    bare_s = min([await _time(bare, scope, n) for _ in range(3)])
    keyed_s = min([await _time(keyed, scope, n) for _ in range(3)])
    from imagegen.logs import ContextFilter, JsonFormatter

    with open(os.devnull, "w") as devnull:
        handler = logging.StreamHandler(devnull)
        handler.addFilter(ContextFilter())
        handler.setFormatter(JsonFormatter())
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        try:
            logged_s = min([await _time(keyed, scope, n) for _ in range(3)])
        finally:
            access.removeHandler(handler)
            access.setLevel(logging.NOTSET)
    return bare_s, keyed_s, logged_s


async def lookup_seconds(n: int) -> float:
    """One key lookup in SQLite (what each request would cost with no cache)."""
    import tempfile

    from imagegen.auth.keys import NewKey, new_secret
    from imagegen.db.store import open_store
    from imagegen.services import key_store

    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(f"sqlite+aiosqlite:///{tmp}/bench.db")
        try:
            keys = key_store(store.database)
            secret = new_secret()
            await keys.create(NewKey("bench"), secret)
            for _ in range(20):
                await keys.find(secret)
            started = time.perf_counter()
            for _ in range(n):
                await keys.find(secret)
            return (time.perf_counter() - started) / n
        finally:
            await store.aclose()


async def run(options: Options) -> Result:
    result = Result(
        NAME,
        "Added cost per request of API-key checks and metrics (EdgeMiddleware + the key "
        "dependency, cache hit), in-process, mean over many requests, best of three.",
    )
    n = options.pick(20000, 2000)
    bare, keyed, logged = await measure(n)
    added = keyed - bare
    result.add(
        "keys + metrics per request",
        f"{added * 1e6:.0f} us",
        f"< {TARGET * 1e6:.0f} us",
        added < TARGET,
    )
    result.add("with the JSON access log line", f"{(logged - bare) * 1e6:.0f} us")
    lookup = await lookup_seconds(options.pick(2000, 200))
    result.add("key lookup without the cache (SQLite)", f"{lookup * 1e6:.0f} us")
    result.note(
        "the cache (IMAGEGEN_KEY_CACHE_SECONDS, default 1 s) pays that lookup once a second per "
        "key and replica instead of on every request"
    )
    result.note(f"{n} requests per pass; bare request {bare * 1e6:.0f} us")
    return result
