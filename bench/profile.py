"""profile: where imagegen's CPU goes under load, sampled by py-spy (when it is installed).

py-spy samples ``imagegen serve`` (``--gil``: only the thread holding the GIL, i.e. Python
actually running) while a closed loop of generations runs. Each sample is put in the first
component found walking its stack from the innermost frame out; the database's thread runs
transactions whose stacks do not show the caller, so SQLAlchemy's frames and imagegen's
``db`` package count as the database wherever they are.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import BODY, GENERATE, INSTANT, Generate, Options
from bench.load import Client, closed_loop
from bench.procs import running
from bench.report import Result

NAME = "profile"
HTTP_CLIENT = "HTTP client (aiohttp, httpx), other"
DATABASE = "database (SQLAlchemy, SQLite)"
DOWNLOAD = "image download (aiohttp)"
PROVIDER = "provider calls (aiohttp)"
COMPONENTS = (
    ("(sqlalchemy/", DATABASE),
    ("(asyncpg/", DATABASE),
    ("GenerationStore", DATABASE),
    ("(imagegen/db/", DATABASE),
    ("SafeFetcher", DOWNLOAD),
    ("inspect_image", "image verify (WebP header, Pillow)"),
    ("(PIL/", "image verify (WebP header, Pillow)"),
    ("(imagegen/webp_header", "image verify (WebP header, Pillow)"),
    ("LocalImageStore", "image store (files)"),
    ("ImageIngestor", "image ingest, other"),
    ("ReplicateClient", PROVIDER),
    ("Retrier", PROVIDER),
    ("(httpx/", HTTP_CLIENT),
    ("(httpcore/", HTTP_CLIENT),
    ("(aiohttp/", HTTP_CLIENT),
    ("(imagegen/http_transport", HTTP_CLIENT),
    ("(imagegen/upstream", HTTP_CLIENT),
    ("PredictionRun", "provider logic"),
    ("ReplicateProvider", "provider logic"),
    ("JobRunner", "job runner"),
    ("(json/", "JSON"),
    ("(pydantic", "pydantic"),
    ("(fastapi/", "HTTP server (uvicorn, Starlette, FastAPI)"),
    ("(starlette/", "HTTP server (uvicorn, Starlette, FastAPI)"),
    ("(uvicorn/", "HTTP server (uvicorn, Starlette, FastAPI)"),
    ("(imagegen/api/", "HTTP server (uvicorn, Starlette, FastAPI)"),
)


def component(stack: str) -> str:
    """The innermost component on ``stack``; HTTP client time goes to whoever made the call."""
    for frame in reversed(stack.split(";")):
        name = next((name for marker, name in COMPONENTS if marker in frame), None)
        if name is not None:
            return _caller_of_http(stack, name) if name == HTTP_CLIENT else name
    return "event loop, other"


def _caller_of_http(stack: str, default: str) -> str:
    for frame in reversed(stack.split(";")):
        if "SafeFetcher" in frame:
            return DOWNLOAD
        if "ReplicateClient" in frame or "Retrier" in frame:
            return PROVIDER
    return default


def breakdown(raw: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if samples.isdigit():
            counts[component(stack)] += int(samples)
    return counts


async def run(options: Options) -> Result:
    from bench.flame import tops

    result = Result(NAME, __doc__.split("\n\n")[1].replace("\n", " "))
    spy = shutil.which("py-spy") or str(Path(__file__).parents[1] / ".venv/bin/py-spy")
    if not Path(spy).exists():
        result.note("py-spy is not installed (`pip install py-spy`): no profile")
        return result
    seconds = options.pick(10, 3)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running(INSTANT, {}) as (_double, server),
    ):
        raw = Path(tmp) / "profile.txt"
        imagegen = Client(server.base_url)
        await imagegen.post(GENERATE, json_body=BODY)
        await closed_loop(Generate(imagegen), concurrency=8, duration=1.0)
        command = [spy, "record", "--gil", "-r", "200", "-f", "raw", "-o", str(raw)]
        command += ["-d", str(seconds), "-p", str(server.pid)]
        spying = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples, elapsed = await closed_loop(
            Generate(imagegen), concurrency=16, duration=seconds + 1
        )
        _, err = spying.communicate(timeout=60)
        imagegen.close()
        if not raw.exists():
            result.note(f"py-spy failed: {err.decode(errors='replace').strip()[-300:]}")
            return result
        counts = breakdown(raw)
        own, _, _ = tops(raw)
        kept = Path(__file__).parent / "results" / "profile-seed-stored.txt"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw, kept)
    total = sum(counts.values())
    rate = len(samples.ok()) / elapsed
    for name, count in counts.most_common():
        result.add(name, f"{100 * count / total:.0f}% of imagegen's CPU")
    result.note(f"{total} samples at {rate:.0f} generations/s, concurrency 16")
    result.note("the raw stacks: bench/results/profile-seed-stored.txt (`python -m bench.flame`)")
    result.note(
        "most own time: "
        + "; ".join(f"{name} {100 * n / total:.1f}%" for name, n in own.most_common(12))
    )
    return result
