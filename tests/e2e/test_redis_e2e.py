"""``imagegen serve`` processes sharing one PostgreSQL database and one Redis, against the
Replicate double as a process:

- an event stream opened on B follows a job running on A as it happens (Redis pub/sub), not at
  B's next re-read of the database (a minute away here);
- three processes share the account's create rate: a burst spread over them goes out at the
  account's rate (within 5 %), and the double never has to refuse a create.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.db import postgres_database
from tests.e2e.conftest import imagegen
from tests.fakes.replicate_double import DoubleProcess
from tests.support.redis import server_url, unique_prefix

pytestmark = pytest.mark.e2e

BODY = {
    "model": "black-forest-labs/flux-schnell",
    "prompt": "a lighthouse in a storm",
    "num_images": 1,
    "width": 512,
    "height": 512,
}


async def follow(api: httpx.AsyncClient, url: str) -> list[tuple[str, dict[str, Any], float]]:
    """Each event of the stream with the time it arrived."""
    events: list[tuple[str, dict[str, Any], float]] = []
    kind = ""
    async with api.stream("GET", url) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: ")), time.monotonic()))
    return events


@pytest.mark.timeout(120)
async def test_an_event_stream_on_b_follows_a_job_running_on_a_without_polling(
    tmp_path: Path, double: DoubleProcess, control: Any
) -> None:
    control.configure(duration=2.0)
    async with postgres_database() as database_url:
        shared = {
            "IMAGEGEN_DATABASE_URL": database_url,
            "IMAGEGEN_REDIS_URL": server_url(),
            "IMAGEGEN_REDIS_PREFIX": unique_prefix(),
            "IMAGEGEN_SSE_HEARTBEAT": "60",  # B's re-read of the database: too late to help
            "IMAGEGEN_POLL_INTERVAL": "0.1",
        }
        with (
            imagegen(tmp_path / "a", double, IMAGEGEN_INSTANCE_ID="a", **shared) as a,
            imagegen(tmp_path / "b", double, IMAGEGEN_INSTANCE_ID="b", **shared) as b,
        ):
            async with httpx.AsyncClient(timeout=60) as api:
                created = await api.post(
                    f"{a.base_url}/api/v1/images/generate",
                    json=BODY,
                    headers={"Prefer": "respond-async"},
                )
                assert created.status_code == 202, created.text
                path = f"/api/v1/generations/{created.json()['id']}/events"
                on_a, on_b = await asyncio.wait_for(
                    asyncio.gather(follow(api, a.base_url + path), follow(api, b.base_url + path)),
                    timeout=60,
                )
    kinds_b = [kind for kind, _, _ in on_b]
    assert kinds_b[-2:] == ["state", "done"], kinds_b
    assert on_b[-1][1]["status"] == "succeeded"
    assert "progress" in kinds_b  # progress reports cross processes too
    done_a, done_b = on_a[-1][2], on_b[-1][2]
    assert done_b - done_a < 2.0, (done_a, done_b)  # as it happens, not 60 s later


@pytest.mark.timeout(180)
async def test_three_processes_create_at_the_accounts_rate_with_no_upstream_429(
    tmp_path: Path, double: DoubleProcess, control: Any
) -> None:
    per_minute, requests = 600, 150  # 10 creates a second: 15 s of creates
    # The double times each create when its own event loop reads it: on two busy cores (three
    # imagegen processes, PostgreSQL, Redis and the double) a stall of the double's loop hands it
    # creates that arrived over a second at once. A burst of 20 absorbs two seconds of that; a
    # budget not shared (each process creating at 10/s: 30/s in all) overruns it by dozens.
    control.configure(duration=0.0, queue_time=0.0, create_rate=per_minute, create_burst=20)
    async with postgres_database() as database_url:
        shared = {
            "IMAGEGEN_DATABASE_URL": database_url,
            "IMAGEGEN_REDIS_URL": server_url(),
            "IMAGEGEN_REDIS_PREFIX": unique_prefix(),
            "IMAGEGEN_REPLICATE_CREATES_PER_MINUTE": str(per_minute),  # each process's setting:
            "IMAGEGEN_REPLICATE_CREATE_BURST": "1",  # the account's, shared through Redis
            "IMAGEGEN_REQUEST_TIMEOUT": "120",
            "IMAGEGEN_RETURN_PROVIDER_URLS": "true",
        }
        servers = [
            imagegen(tmp_path / name, double, IMAGEGEN_INSTANCE_ID=name, **shared).start()
            for name in ("a", "b", "c")
        ]
        try:
            limits = httpx.Limits(max_connections=requests)
            async with httpx.AsyncClient(timeout=150, limits=limits) as api:

                async def generate(index: int) -> tuple[int, str, float]:
                    base_url = servers[index % len(servers)].base_url
                    response = await api.post(f"{base_url}/api/v1/images/generate", json=BODY)
                    return response.status_code, response.text, time.monotonic()

                results = await asyncio.gather(*(generate(i) for i in range(requests)))
        finally:
            for server in servers:
                server.stop()
    statuses = [status for status, _, _ in results]
    failed = {text for status, text, _ in results if status != 200}
    assert statuses == [200] * requests, ({s: statuses.count(s) for s in set(statuses)}, failed)
    stats = control.stats()
    assert stats["creates"]["total"] == requests  # one prediction per request
    assert stats["creates_rate_limited"] == 0  # zero upstream 429s
    # The rate the account saw: the double's own create times (client response times bunch up
    # on a loaded machine; the shared bucket's burst is 1, so no create goes early).
    created = sorted(p["created"] for p in stats["predictions"])
    achieved = (len(created) - 1) / (created[-1] - created[0]) * 60
    assert abs(achieved - per_minute) / per_minute <= 0.05, achieved
