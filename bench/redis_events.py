"""Events across replicas: how long a job's state change on replica A takes to reach an event
stream (SSE) opened on replica B. ``python -m bench.redis_events [--jobs N]``.

Two ``imagegen serve`` processes share one PostgreSQL database (a fresh one on the test server,
``tests/support/postgres.py``) and one Redis (127.0.0.1:6379, or ``IMAGEGEN_TEST_REDIS_URL``;
a key prefix of its own); the Replicate double holds each prediction ``--duration`` seconds.
Each job is created on A (``Prefer: respond-async``) and followed on both A and B at once; the
change measured is ``running -> succeeded``. Two latencies per job:

- *B after A*: the ``state`` event's arrival on B's stream minus its arrival on A's (A hears its
  own change in-process; the difference is what the trip through Redis costs B);
- *B after the stamp*: its arrival on B minus the job's ``completed_at`` (A's clock, the same
  machine), stamped before A's transaction: it adds A's database write and publish.

B's re-read of the database is set a minute apart, so only the bus can bring the change in time.
Not part of ``python -m bench``: it needs PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from tests.db import postgres_database
from tests.support.redis import server_url, unique_prefix

from bench.common import BODY, GENERATE, INSTANT
from bench.machine import describe
from bench.procs import IMAGEGEN_ENV, UNGUARDED_ENV, Double, Imagegen, double_args


async def follow(api: httpx.AsyncClient, url: str) -> dict[str, tuple[float, float, str]]:
    """The arrival (monotonic, wall) of each state the stream reports, by status."""
    seen: dict[str, tuple[float, float, str]] = {}
    kind = ""
    async with api.stream("GET", url) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == "state":
                data = json.loads(line.removeprefix("data: "))
                seen.setdefault(data["status"], (time.monotonic(), time.time(), line))
    return seen


async def one_job(api: httpx.AsyncClient, a: str, b: str) -> tuple[float, float] | None:
    created = await api.post(f"{a}{GENERATE}", json=BODY, headers={"Prefer": "respond-async"})
    created.raise_for_status()
    path = f"/api/v1/generations/{created.json()['id']}/events"
    on_a, on_b = await asyncio.gather(follow(api, a + path), follow(api, b + path))
    if "succeeded" not in on_a or "succeeded" not in on_b:
        return None
    if len(on_b) < 2:  # B's stream opened after the change: no change to time
        return None
    mono_a = on_a["succeeded"][0]
    mono_b, wall_b, line = on_b["succeeded"]
    completed = datetime.fromisoformat(json.loads(line[6:])["completed_at"]).timestamp()
    return mono_b - mono_a, wall_b - completed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def measure(jobs: int, concurrency: int, duration: float) -> dict[str, Any]:
    double_options = {**INSTANT, "duration": duration}
    async with postgres_database() as database_url:
        with (
            tempfile.TemporaryDirectory(prefix="imagegen-bench-") as tmp,
            Double(*double_args(**double_options)) as double,
        ):
            env = {
                **IMAGEGEN_ENV,
                **UNGUARDED_ENV,
                "REPLICATE_BASE_URL": double.base_url,
                "IMAGEGEN_DATABASE_URL": database_url,
                "IMAGEGEN_REDIS_URL": server_url(),
                "IMAGEGEN_REDIS_PREFIX": unique_prefix(),
                "IMAGEGEN_SSE_HEARTBEAT": "60",
                "IMAGEGEN_POLL_INTERVAL": "0.05",
                "IMAGEGEN_RETURN_PROVIDER_URLS": "true",
            }
            with (
                Imagegen(Path(tmp) / "a", {**env, "IMAGEGEN_INSTANCE_ID": "a"}) as a,
                Imagegen(Path(tmp) / "b", {**env, "IMAGEGEN_INSTANCE_ID": "b"}) as b,
            ):
                limits = httpx.Limits(max_connections=4 * concurrency)
                async with httpx.AsyncClient(timeout=60, limits=limits) as api:
                    await one_job(api, a.base_url, b.base_url)  # warm-up, not counted
                    gate = asyncio.Semaphore(concurrency)

                    async def gated() -> tuple[float, float] | None:
                        async with gate:
                            return await one_job(api, a.base_url, b.base_url)

                    samples = await asyncio.gather(*(gated() for _ in range(jobs)))
    measured = [s for s in samples if s is not None]
    after_a = [s[0] for s in measured]
    after_stamp = [s[1] for s in measured]
    return {
        "jobs": jobs,
        "measured": len(measured),  # B's stream saw the job before the change
        "concurrency": concurrency,
        "b_after_a_ms": {
            "p50": statistics.median(after_a) * 1000,
            "p99": pct(after_a, 99) * 1000,
            "max": max(after_a) * 1000,
        },
        "b_after_completed_at_ms": {
            "p50": statistics.median(after_stamp) * 1000,
            "p99": pct(after_stamp, 99) * 1000,
            "max": max(after_stamp) * 1000,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_events")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--duration", type=float, default=1.0)
    args = parser.parse_args()
    started = time.monotonic()
    result = asyncio.run(measure(args.jobs, args.concurrency, args.duration))
    result["seconds"] = round(time.monotonic() - started, 1)
    result["machine"] = describe()
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
