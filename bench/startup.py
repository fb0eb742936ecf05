"""start-up: ``imagegen serve`` until it answers, ``import imagegen``, and no torch.

Each figure is the median of a few runs. The server is timed from ``Popen`` to its first 200 on
``/healthz``: on a fresh data directory (database created and migrated) and on an existing one.
One more start runs with ``PYTHONPROFILEIMPORTTIME=1``, and the modules it imported are checked
for heavy ones (torch, diffusers, transformers, numpy) and ranked by import time.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.imagegen_process import free_port

from bench.common import Options
from bench.load import Client, HttpError
from bench.procs import IMAGEGEN_ENV, REPO_ROOT, usage
from bench.report import Result, ms

NAME = "start-up"
TARGET = 1.0
HEAVY = ("torch", "diffusers", "transformers", "numpy")
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)$")


def _env(data: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGEN_", "REPLICATE_"))}
    env.update(IMAGEGEN_ENV)
    env.update({"IMAGEGEN_DATA_DIR": str(data), "IMAGEGEN_PORT": str(port), **extra})
    env["REPLICATE_BASE_URL"] = "http://127.0.0.1:9"  # never called: nothing is generated
    return env


async def time_serve(data: Path, **extra: str) -> tuple[float, str]:
    """Seconds from start to the first 200 on /healthz, and what the process wrote."""
    seconds, log, _ = await serve_once(data, **extra)
    return seconds, log


async def serve_once(data: Path, **extra: str) -> tuple[float, str, int]:
    """``time_serve``, and the process's resident memory (bytes) once it has answered."""
    port = free_port()
    log = data.parent / f"serve-{port}.log"
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "imagegen", "serve"],
            cwd=data.parent,
            env=_env(data, port, **extra),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = Client(f"http://127.0.0.1:{port}")
    try:
        while time.perf_counter() - started < 30:
            try:
                if (await client.get("/healthz", timeout=1)).status == 200:
                    seconds = time.perf_counter() - started
                    await asyncio.sleep(0.5)  # idle: what start-up left behind settles
                    return seconds, log.read_text(errors="replace"), usage(proc.pid).rss_bytes
            except (HttpError, OSError, TimeoutError):
                pass
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.005)
        raise RuntimeError(f"imagegen serve did not answer:\n{log.read_text(errors='replace')}")
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


async def floor_answers() -> float:
    """Seconds from start to the first answer of the least app in imagegen's framework: one
    FastAPI route with a pydantic body and reply, on uvicorn with httptools and uvloop
    (``bench.floor_server --kind fastapi``), nothing of imagegen's imported."""
    port = free_port()
    started = time.perf_counter()
    command = [sys.executable, "-m", "bench.floor_server", "--kind", "fastapi", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    client = Client(f"http://127.0.0.1:{port}")
    try:
        while time.perf_counter() - started < 30 and proc.poll() is None:
            try:
                await client.get("/", timeout=1)  # any answer: a 404 is the app answering
                return time.perf_counter() - started
            except (HttpError, OSError, TimeoutError):
                await asyncio.sleep(0.005)
        raise RuntimeError("bench.floor_server --kind fastapi did not answer")
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def time_import(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
    return time.perf_counter() - started


def imports(log: str) -> list[tuple[str, float]]:
    """(module, cumulative seconds) of top-level imports from ``-X importtime`` output."""
    found = []
    for line in log.splitlines():
        match = _IMPORT_LINE.match(line)
        if match and len(match[3]) == 1:  # one space of indent: a top-level import
            found.append((match[4], int(match[2]) / 1e6))
    return found


async def run(options: Options) -> Result:
    result = Result(NAME, __doc__.split("\n\n")[1].replace("\n", " "))
    runs = options.pick(5, 2)
    bare = statistics.median(time_import("pass") for _ in range(runs))
    package = statistics.median(time_import("import imagegen") for _ in range(runs))
    app = statistics.median(
        time_import("import imagegen.serve_command, imagegen.api.app, imagegen.services")
        for _ in range(runs)
    )
    fresh, warm = [], []
    with tempfile.TemporaryDirectory(prefix="imagegen-bench-") as tmp:
        for index in range(runs):
            data = Path(tmp) / f"data-{index}"
            fresh.append((await time_serve(data))[0])
            warm.append((await time_serve(data))[0])
        _, log = await time_serve(Path(tmp) / "profiled", PYTHONPROFILEIMPORTTIME="1")
    modules = imports(log)
    names = {name.split(".")[0] for name, _ in modules}
    heavy = sorted(names & set(HEAVY))
    serve_fresh, serve_warm = statistics.median(fresh), statistics.median(warm)
    result.add(
        "`imagegen serve` answers (fresh data dir)", ms(serve_fresh), "< 1 s", serve_fresh < TARGET
    )
    result.add(
        "`imagegen serve` answers (existing data)", ms(serve_warm), "< 1 s", serve_warm < TARGET
    )
    result.add("`import imagegen`", ms(package), "< 1 s", package < TARGET)
    result.add(
        "heavy modules imported by serve",
        ", ".join(heavy) or "none",
        "no torch",
        "torch" not in heavy,
    )
    slowest = sorted(modules, key=lambda item: -item[1])[:6]
    result.note(
        f"interpreter alone {ms(bare)}; `import imagegen` {ms(package)}; the modules serve "
        f"needs (serve_command, api.app, services) {ms(app)}"
    )
    result.note(
        "slowest top-level imports of serve: "
        + ", ".join(f"{name} {ms(seconds)}" for name, seconds in slowest)
    )
    return result
