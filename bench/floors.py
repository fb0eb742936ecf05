"""floors: what each piece of a stored generation's work costs at least on this machine.

Each piece a stored generation on the seed endpoint does is measured here with the bare libraries
imagegen builds on and none of imagegen's code, in the same run as imagegen's own CPU per generation
(64 connections, the Replicate double answering at once): the inbound request (uvicorn with
httptools and uvloop, a bare ASGI app and the same route in FastAPI with a pydantic body and reply;
``bench.floor_server``), an outbound request (aiohttp, the client under imagegen's provider and
download clients: a JSON create and a small download), a durable write transaction on SQLite (WAL,
``synchronous=NORMAL``, ``BEGIN IMMEDIATE``; with the ``sqlite3`` driver alone and through
SQLAlchemy Core), the trip between the event loop and the database's thread, and for context an
image's verification by Pillow and a new image's store (write, fsync, rename). Their sum, with each
piece counted as often as a stored generation does it, is the least that work can cost in this
design (one Python process, a durable record of each state); imagegen's CPU per generation over that
sum is what its own code adds.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import BODY, GENERATE, INSTANT, Direct, Options
from bench.load import Client, Samples, closed_loop, percentile, timed
from bench.procs import TOKEN, running, start_ready, usage
from bench.report import Result, ms

NAME = "floors"
#: The durable write transactions of a generation on the seed endpoint: the job (written running
#: when a slot is free) with the create about to be sent (what makes a retry after a crash safe),
#: its prediction (recorded while its output is stored), succeeded.
WRITES = 3
#: Passed through, the prediction is recorded with the success, in one transaction.
WRITES_THROUGH = 2
_ROW = json.dumps({**BODY, "seed": 42, "output_format": "webp", "go_fast": True})


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us"


async def _server_cpu(kind: str, seconds: float) -> float:
    """CPU seconds ``bench.floor_server --kind kind`` spends per request, 16 connections."""
    proc, base_url = start_ready("bench.floor_server", "--kind", kind)
    try:
        client = Client(base_url)

        async def call() -> int:
            return (await client.post("/generate", json_body=BODY)).status

        await closed_loop(call, concurrency=16, duration=0.5)
        before = usage(proc.pid)
        samples, _ = await closed_loop(call, concurrency=16, duration=seconds)
        after = usage(proc.pid)
        client.close()
        if samples.errors():
            raise RuntimeError(f"floor server {kind}: {len(samples.errors())} errors")
        return (after.cpu_seconds - before.cpu_seconds) / len(samples.ok())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _client_cpu(seconds: float) -> tuple[float, float]:
    """This process's CPU seconds per aiohttp request to the bare server: (create, download)."""
    import aiohttp

    proc, base_url = start_ready("bench.floor_server", "--kind", "asgi")
    try:
        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(base_url, connector=connector) as session:

            async def create() -> int:
                async with session.post("/generate", json=BODY) as reply:
                    await reply.json()
                    return reply.status

            async def download() -> int:
                async with session.get("/files/image.webp") as reply:
                    await reply.read()
                    return reply.status

            return await _own_cpu(create, seconds), await _own_cpu(download, seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _own_cpu(call: Callable[[], Awaitable[int]], seconds: float) -> float:
    await closed_loop(call, concurrency=16, duration=0.3)
    before = time.process_time()
    samples, _ = await closed_loop(call, concurrency=16, duration=seconds)
    spent = time.process_time() - before
    if samples.errors():
        raise RuntimeError(f"{len(samples.errors())} errors")
    return spent / len(samples.ok())


def _per_call(work: Callable[[], object], count: int) -> float:
    for _ in range(min(count, 50)):
        work()
    before = time.process_time()
    for _ in range(count):
        work()
    return (time.process_time() - before) / count


def _sqlite_transaction(path: Path, count: int) -> float:
    """A job row's insert in its own ``BEGIN IMMEDIATE`` transaction, then one update."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT, request TEXT)")
    ids = iter(range(10**9))

    def write() -> None:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO jobs VALUES (?, 'queued', ?)", (f"j{next(ids)}", _ROW))
        connection.execute("COMMIT")

    spent = _per_call(write, count)
    connection.close()
    return spent


def _sqlalchemy_transaction(path: Path, count: int) -> float:
    """The same transaction through SQLAlchemy Core (a ``Table`` with a JSON column,
    ``insert()``, one connection held): what the toolkit adds to each."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{path}", isolation_level="AUTOCOMMIT")
    metadata = sa.MetaData()
    jobs = sa.Table(
        "jobs",
        metadata,
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("state", sa.String),
        sa.Column("request", sa.JSON),
    )
    metadata.create_all(engine)
    statement = jobs.insert()
    request = json.loads(_ROW)
    ids = iter(range(10**9))

    connection = engine.connect()  # held, as the database's writer thread holds its own
    connection.exec_driver_sql("PRAGMA journal_mode = WAL")
    connection.exec_driver_sql("PRAGMA synchronous = NORMAL")

    def write() -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        row = {"id": f"j{next(ids)}", "state": "queued", "request": request}
        connection.execute(statement, row)
        connection.exec_driver_sql("COMMIT")

    spent = _per_call(write, count)
    connection.close()
    engine.dispose()
    return spent


async def _thread_trip(count: int) -> float:
    """The event loop hands a function to one worker thread and awaits its result."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as executor:
        for _ in range(50):
            await loop.run_in_executor(executor, int)
        before = time.process_time()
        for _ in range(count):
            await loop.run_in_executor(executor, int)
        return (time.process_time() - before) / count


def _verify(count: int) -> float:
    import io

    from PIL import Image
    from tests.fakes.images import make_image

    data = make_image(512, 512, "webp")

    def verify() -> None:
        with Image.open(io.BytesIO(data), formats=["WEBP", "PNG", "JPEG"]) as image:
            _ = image.size, image.format
            image.verify()

    return _per_call(verify, count)


def _store(root: Path, count: int) -> float:
    """An image's bytes to a temporary file, fsynced, renamed into place."""
    data = os.urandom(1024)
    names = iter(range(10**9))

    def store() -> None:
        name = next(names)
        staged = root / f".{name}.tmp"
        with open(staged, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(staged, root / f"{name}.webp")

    return _per_call(store, count)


async def _imagegen_cpu(seconds: float, env: dict[str, str]) -> float:
    with running(INSTANT, env) as (_double, server):
        client = Client(server.base_url)

        async def call() -> int:
            return (await client.post(GENERATE, json_body=BODY, timeout=600)).status

        await closed_loop(call, concurrency=16, duration=1.0)
        before = usage(server.pid)
        samples, _ = await closed_loop(call, concurrency=64, duration=seconds)
        after = usage(server.pid)
        client.close()
    if samples.errors():
        raise RuntimeError(f"imagegen: {len(samples.errors())} errors")
    return (after.cpu_seconds - before.cpu_seconds) / len(samples.ok())


class _FetchedBack:
    """``POST path`` on a server whose reply names the double's image, then that image."""

    def __init__(self, server: str, path: str, double: Client, double_url: str) -> None:
        self._server, self._path = Client(server), path
        self._double, self._double_url = double, double_url

    async def __call__(self) -> int:
        reply = await self._server.post(self._path, json_body=BODY, timeout=60)
        if reply.status != 200:
            return reply.status
        url = reply.json()["image_urls"][0]
        return (await self._double.get(url.removeprefix(self._double_url))).status

    def close(self) -> None:
        self._server.close()


async def _design_at_one_connection(seconds: float) -> dict[str, tuple[float, float, int]]:
    """Passed through, one connection: imagegen, the design floor (``bench.floor_server --kind
    design``) and the double directly, alternated one request at a time in one loop. For each:
    (p50 latency, server CPU per generation, generations)."""
    passthrough = {"IMAGEGEN_RETURN_PROVIDER_URLS": "true"}
    with (
        running(INSTANT, passthrough) as (double, server),
        tempfile.TemporaryDirectory(prefix="imagegen-bench-") as tmp,
    ):
        floor, floor_url = start_ready(
            "bench.floor_server",
            *("--kind", "design", "--upstream", double.base_url, "--token", TOKEN),
            *("--database", f"{tmp}/design.db"),
        )
        try:
            fetch = Client(double.base_url)
            first = await Client(server.base_url).post(GENERATE, json_body=BODY)
            calls = {
                "imagegen": _FetchedBack(server.base_url, GENERATE, fetch, double.base_url),
                "design floor": _FetchedBack(floor_url, "/generate", fetch, double.base_url),
                "direct": await Direct.like(Client(server.base_url), double.base_url, first.json()),
            }
            pids = {"imagegen": server.pid, "design floor": floor.pid}
            for _ in range(50):
                for call in calls.values():
                    await call()
            samples = Samples()
            cpu = {label: 0.0 for label in pids}
            loop = asyncio.get_running_loop()
            stop = loop.time() + seconds
            while loop.time() < stop:
                for label, call in calls.items():
                    before = usage(pids[label]).cpu_seconds if label in pids else 0.0
                    await timed(call, 0.0, label, samples)
                    if label in pids:
                        cpu[label] += usage(pids[label]).cpu_seconds - before
            for call in calls.values():
                call.close()
            fetch.close()
        finally:
            floor.terminate()
            floor.wait()
    if samples.errors():
        raise RuntimeError(f"design floor: {len(samples.errors())} errors")
    measured = {}
    for label in calls:
        latencies = [s.seconds for s in samples.ok(label)]
        spent = cpu.get(label, 0.0) / len(latencies)
        measured[label] = (percentile(latencies, 50), spent, len(latencies))
    return measured


async def run(options: Options) -> Result:
    result = Result(NAME, __doc__.split("\n\n")[1].replace("\n", " "))
    seconds = options.pick(6.0, 2.0)
    count = options.pick(3000, 500)
    bare = await _server_cpu("asgi", seconds)
    framework = await _server_cpu("fastapi", seconds)
    create, download = await _client_cpu(seconds)
    with tempfile.TemporaryDirectory(prefix="imagegen-bench-") as tmp:
        root = Path(tmp)
        sqlite = _sqlite_transaction(root / "raw.db", count)
        toolkit = _sqlalchemy_transaction(root / "core.db", count)
        trip = await _thread_trip(count)
        verify = _verify(count)
        store = _store(root, count)
    stored = await _imagegen_cpu(options.pick(10.0, 3.0), {})
    through = await _imagegen_cpu(
        options.pick(10.0, 3.0), {"IMAGEGEN_RETURN_PROVIDER_URLS": "true"}
    )
    one = await _design_at_one_connection(options.pick(20.0, 3.0))

    # (what, CPU, times in a stored generation, times in one passed through)
    pieces = [
        ("inbound request, bare ASGI on uvicorn (server CPU)", bare, 0, 0),
        ("inbound request, FastAPI with a pydantic body and reply", framework, 1, 1),
        ("outbound create, aiohttp (client CPU)", create, 1, 1),
        ("outbound download, aiohttp (client CPU)", download, 1, 0),
        ("write transaction, sqlite3", sqlite, WRITES, WRITES_THROUGH),
        ("write transaction, SQLAlchemy Core over sqlite3", toolkit, 0, 0),
        # A write that finds the writer idle runs on the event loop (``db/database.py``): the
        # least a write costs in this design is its transaction. Under load writes queue for
        # the writer's thread and commit in groups, a trip for each group.
        ("event loop to a thread and back", trip, 0, 0),
        # imagegen checks a simple WebP (one frame, no alpha) from its header, without Pillow
        # (whose open allocates the canvas and checks nothing more); other images go to Pillow.
        ("image verified by Pillow (512x512 WebP)", verify, 0, 0),
        # The double's images repeat (a few colours), and the store keeps one file per content:
        # after the first few, imagegen finds each image stored (one stat) and writes nothing.
        ("a new image stored (write, fsync, rename)", store, 0, 0),
    ]
    floor_stored = floor_through = 0.0
    for label, spent, in_stored, in_through in pieces:
        counted = f"x {in_stored} stored, x {in_through} passed through"
        result.add(label, us(spent), counted if in_stored or in_through else "(context)")
        floor_stored += spent * in_stored
        floor_through += spent * in_through
    for mode, floor, imagegen in (
        ("images stored", floor_stored, stored),
        ("provider URLs passed through", floor_through, through),
    ):
        result.add(f"floor of a generation, {mode} (the sum, as counted)", us(floor))
        result.add(f"imagegen CPU per generation, {mode} (same run)", us(imagegen))
        result.add(f"imagegen over the floor, {mode}", f"{imagegen / floor:.1f}x")
    direct = one["direct"][0]
    for label in ("design floor", "imagegen"):
        latency, spent, _ = one[label]
        what = "the design floor" if label == "design floor" else "imagegen"
        result.add(f"added p50, 1 connection, passed through: {what}", ms(latency - direct))
        result.add(f"CPU per generation, 1 connection, passed through: {what}", us(spent))
    result.note(
        f"one connection, passed through, alternated in one loop: p50 {ms(one['imagegen'][0])} "
        f"through imagegen, {ms(one['design floor'][0])} through the design floor "
        f"(`bench.floor_server --kind design`), {ms(direct)} direct; "
        f"{one['imagegen'][2]} generations each; the CPU is each server's (user and system) "
        "over its own requests, the image fetched back from the double not included"
    )
    result.note(
        "a stored generation counted as 1 inbound request, 2 outbound (create, download), "
        f"{WRITES} write transactions (on the event loop when the writer is idle: no trip to "
        "the database thread counted; under load they queue for it and commit in groups); the "
        "double's "
        "images are simple WebPs, checked from their header (Pillow's verification, for "
        "other images, is context), and they repeat, so imagegen finds each already stored (a "
        "new image would add the store's write, fsync and rename); one passed through as the "
        f"same without the download, with {WRITES_THROUGH} write transactions (its prediction "
        "recorded with the success)"
    )
    return result
