"""targets: each target of the performance issue against its measured value, in one place.

Measured here (seed endpoint, the Replicate double answering at once, one ``imagegen serve``):
the latency imagegen adds at one connection (the client's generate and the fetch of the image
it names, against the double's create and download done directly, alternated in one closed
loop), with images stored and with provider URLs passed through; generations/s and imagegen's
CPU per generation at 64 connections, images stored; resident memory idle; start-up. Taken from
the latest ``make bench-peer`` run (``bench/results/peer-latest.json``): the ratio to LiteLLM's
proxy at 64 connections and the 1,000-connection case against a 1 s upstream.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.common import BODY, GENERATE, INSTANT, Direct, Options
from bench.load import Client, Samples, closed_loop, percentile, timed
from bench.procs import REPO_ROOT, running, usage
from bench.report import Result, ms
from bench.startup import floor_answers, serve_once

NAME = "targets"
PEER = REPO_ROOT / "bench" / "results" / "peer-latest.json"
ADDED_THROUGH, ADDED_STORED = 0.001, 0.003
RATE_STORED, CPU_STORED = 400.0, 0.0015
RSS_IDLE, SERVE = 80 * 2**20, 0.5
PEER_RATIO, SLOW_RATE, SLOW_P99 = 3.0, 900.0, 1.2
LIMITS = (
    "CPU on one Python process's path. The `floors` section measures, in one run, what each "
    "piece of a generation's work costs with the bare libraries and none of imagegen's code; "
    "what imagegen adds above that sum is in the `profile` section and the notes. At one "
    "connection the added latency is that CPU on the request's path: the inbound request, the "
    "write transactions the guarantees need (the job, written running with the create about to "
    "be sent, committed before it is sent; the success committed before it is reported), run on "
    "the event loop while the database's writer is idle, and, with images stored, the download and "
    "the image fetched back; `floors` runs the same passed-through generation on the bare "
    "libraries (the design floor) beside imagegen at one connection. 400 generations/s on one "
    "core leaves 2.5 ms per generation, with the load generator and the double sharing the "
    "second core. Start-up: importing FastAPI, SQLAlchemy, pydantic-settings and uvicorn is most "
    "of what `imagegen serve` does before it answers; the floor row is a FastAPI app of one "
    "route, started the same way. The peer rows: 900/s at 1,000 connections against a 1 s "
    "upstream needs about 0.8 ms of CPU per request or less in one process; under that load "
    "writes queue for the "
    "database's thread, and the interpreter lock held by the busy event loop delays them on "
    "every request's path."
)


class FetchedBack:
    """Generate through imagegen, then fetch the image its reply names (imagegen's own URL
    when images are stored, the double's when provider URLs are passed through)."""

    def __init__(self, imagegen: Client, double_url: str) -> None:
        self._imagegen, self._double_url = imagegen, double_url
        self._double = Client(double_url)

    async def __call__(self) -> int:
        reply = await self._imagegen.post(GENERATE, json_body=BODY, timeout=60)
        if reply.status != 200:
            return reply.status
        url = reply.json()["image_urls"][0]
        if url.startswith(self._double_url):
            return (await self._double.get(url.removeprefix(self._double_url))).status
        path = "/" + url.split("://", 1)[1].split("/", 1)[1]
        return (await self._imagegen.get(path)).status

    def close(self) -> None:
        self._double.close()


async def added_at_one_connection(env: dict[str, str], seconds: float) -> tuple[float, str]:
    """(added p50, a note): imagegen's path and the direct one alternated, one at a time."""
    with running(INSTANT, env) as (double, server):
        imagegen = Client(server.base_url)
        first = await imagegen.post(GENERATE, json_body=BODY)
        direct = await Direct.like(imagegen, double.base_url, first.json())
        via = FetchedBack(imagegen, double.base_url)
        for _ in range(20):
            await via()
            await direct()
        samples = Samples()
        loop = asyncio.get_running_loop()
        stop = loop.time() + seconds
        while loop.time() < stop:
            await timed(via, 0.0, "imagegen", samples)
            await timed(direct, 0.0, "direct", samples)
        via.close()
        direct.close()
        imagegen.close()
    through = [s.seconds for s in samples.ok("imagegen")]
    bare = [s.seconds for s in samples.ok("direct")]
    added = percentile(through, 50) - percentile(bare, 50)
    note = (
        f"p50 {ms(percentile(through, 50))} through imagegen, {ms(percentile(bare, 50))} direct; "
        f"{len(through)} + {len(bare)} ok, {len(samples.errors())} errors"
    )
    return added, note


def _peer() -> dict[str, Any] | None:
    try:
        loaded = json.loads(PEER.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


async def run(options: Options) -> Result:
    result = Result(NAME, __doc__.split("\n\n")[1].replace("\n", " "), limits=LIMITS)
    seconds = options.pick(10.0, 3.0)
    passthrough = {"IMAGEGEN_RETURN_PROVIDER_URLS": "true"}
    through, note = await added_at_one_connection(passthrough, seconds)
    result.add(
        "added p50, 1 connection, provider URLs passed through",
        ms(through),
        f"<= {ms(ADDED_THROUGH)}",
        through <= ADDED_THROUGH,
    )
    result.note(f"passed through: {note}")
    stored, note = await added_at_one_connection({}, seconds)
    result.add(
        "added p50, 1 connection, images stored",
        ms(stored),
        f"<= {ms(ADDED_STORED)}",
        stored <= ADDED_STORED,
    )
    result.note(f"stored: {note}")

    with running(INSTANT, {}) as (_double, server):
        imagegen = Client(server.base_url)
        await closed_loop(_generate(imagegen), concurrency=16, duration=1.0)  # warm
        before = usage(server.pid)
        samples, elapsed = await closed_loop(
            _generate(imagegen), concurrency=64, duration=options.pick(15.0, 4.0)
        )
        after = usage(server.pid)
        imagegen.close()
    ok, errors = samples.ok(), samples.errors()
    rate = len(ok) / elapsed
    cpu = (after.cpu_seconds - before.cpu_seconds) / max(1, len(ok))
    result.add(
        "generations/s, 64 connections, images stored",
        f"{rate:.0f}/s" + (f" ({len(errors)} errors)" if errors else ""),
        f">= {RATE_STORED:.0f}/s",
        rate >= RATE_STORED and not errors,
    )
    result.add(
        "imagegen CPU per generation, images stored",
        ms(cpu),
        f"<= {ms(CPU_STORED)}",
        cpu <= CPU_STORED,
    )
    with tempfile.TemporaryDirectory(prefix="imagegen-bench-") as tmp:
        data = Path(tmp) / "data"
        _, _, fresh_rss = await serve_once(data)  # a fresh data dir: the database is created
        starts, floors = [], []
        for _ in range(3):  # the data exists: the usual start, alternated with the floor's
            starts.append(await serve_once(data))
            floors.append(await floor_answers())
    serve = statistics.median(seconds for seconds, _, _ in starts)
    floor = statistics.median(floors)
    rss = statistics.median(rss for _, _, rss in starts)
    result.add(
        "memory idle (RSS, after start-up, existing data)",
        f"{rss / 2**20:.0f} MB",
        f"<= {RSS_IDLE / 2**20:.0f} MB",
        rss <= RSS_IDLE,
    )
    result.add(
        "memory idle (RSS, after the first start: database created, Alembic loaded)",
        f"{fresh_rss / 2**20:.0f} MB",
        "(context)",
    )
    result.add(
        "`imagegen serve` answers (existing data)", ms(serve), f"< {ms(SERVE)}", serve < SERVE
    )
    result.add(
        "(floor) a FastAPI app of one route on uvicorn answers (same run)", ms(floor), "(context)"
    )
    _peer_rows(result)
    return result


def _generate(imagegen: Client) -> Any:
    async def call() -> int:
        return (await imagegen.post(GENERATE, json_body=BODY, timeout=600)).status

    return call


def _peer_rows(result: Result) -> None:
    peer = _peer()
    missing = "not measured: run `make bench-peer`"
    if peer is None:
        result.add("64 connections, passed through, vs LiteLLM", missing, f">= {PEER_RATIO:g}x")
        result.add("1,000 connections, 1 s upstream", missing, f">= {SLOW_RATE:.0f} ok/s")
        return
    ratio = peer.get("ratio_fast")
    result.add(
        "64 connections, passed through, vs LiteLLM (peer run)",
        "n/a" if ratio is None else f"{ratio:.2f}x",
        f">= {PEER_RATIO:g}x",
        None if ratio is None else ratio >= PEER_RATIO,
    )
    for mode in ("passthrough", "stored"):
        slow = peer.get("slow", {}).get(f"imagegen-{mode}")
        if not slow:
            continue
        rate, success, p99 = slow["rps_ok"], slow["success_pct"], slow["p99_ms"] / 1000
        result.add(
            f"{slow['conc']} connections, 1 s upstream, {mode} "
            f"(peer run, {slow['workers']} worker(s))",
            f"{rate:.0f} ok/s, {success:.1f} % ok, p99 {p99:.2f} s",
            f">= {SLOW_RATE:.0f} ok/s, 100 %, p99 <= {SLOW_P99:g} s",
            rate >= SLOW_RATE and success >= 100.0 and p99 <= SLOW_P99,
        )
    result.note(f"peer run {peer.get('start', '?')}, load average {peer.get('loads', '?')}")
