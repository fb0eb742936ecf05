"""image path: what downloading, verifying and storing a 4 MB image costs beyond the download.

A file server (``bench.files``) stands in for replicate.delivery with real, distinct 4 MB PNGs;
the double's ``output_url`` fault makes a prediction's output one of them. Interleaved, one at a
time: a generation whose output is a 4 MB image, a generation whose output is the double's tiny
image, and the bare download of a 4 MB image by the load generator. What imagegen adds for the
image is ``big - small - bare``.

Then, at rising concurrency, batches of tiny-image generations and then of 4 MB ones while
imagegen's resident memory is sampled: what the 4 MB batches add beyond the tiny ones is what
the image bodies cost. Streamed, that stays flat; buffered, it grows ~4 MB per download.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from itertools import count

from bench.common import INSTANT, Generate, Options
from bench.load import Client, all_at_once, percentile
from bench.procs import PeakRss, file_server, running
from bench.report import Result, mb, ms

NAME = "image-path"
SIZE = 4 * 2**20
TARGET_ADDED = 0.020
#: Peak memory growth allowed per extra concurrent download: a buffered 4 MB body is >= 4 MiB.
TARGET_PER_DOWNLOAD = 512 * 1024
LIMITS = (
    "Memory grows below imagegen's streaming code, in httpx's transport: anyio's asyncio "
    "`StreamProtocol` (under httpcore) appends every chunk it receives to an unbounded deque and "
    "never pauses the transport, so on a fast link the sender runs ahead of the consumer "
    "(hashing and spooling to disk) and part of each body waits in memory. aiohttp's "
    "`StreamReader` pauses reading past a high-water mark."
)


def _allow(files: str) -> dict[str, str]:
    """The file server is on another port of the double's host: allowed only by name."""
    return {"IMAGEGEN_DOWNLOAD_ALLOWED_HOSTS": json.dumps([files])}


async def run(options: Options) -> Result:
    result = Result(NAME, __doc__.split("\n\n")[1].replace("\n", " "), limits=LIMITS)
    rounds = options.pick(40, 8)
    levels = options.pick((1, 8, 32), (1, 8))
    numbers = count()
    with file_server(SIZE) as files, running(INSTANT, _allow(files)) as (double, server):
        imagegen = Client(server.base_url)
        bare = Client(files)
        generate = Generate(imagegen)
        await generate()

        def big_next(times: int = 1) -> None:
            faults = [
                {"fault": "output_url", "url": f"{files}/img/{next(numbers)}.png"}
                for _ in range(times)
            ]
            double.ctl.script_many(faults)

        timings: dict[str, list[float]] = {"big": [], "small": [], "bare": []}
        for _ in range(rounds):
            big_next()
            timings["big"].append(await _timed(generate))
            timings["small"].append(await _timed(generate))
            timings["bare"].append(
                await _timed(lambda: _status(bare.get(f"/img/{next(numbers)}.png")))
            )
        medians = {name: percentile(values, 50) for name, values in timings.items()}
        added = medians["big"] - medians["small"] - medians["bare"]
        result.add(
            "added to a 4 MB download (p50)",
            ms(added),
            f"<= {ms(TARGET_ADDED)}",
            added <= TARGET_ADDED,
        )
        result.note(
            "p50: generation with a 4 MB image {big}, with a tiny image {small}, bare 4 MB "
            "download {bare}".format(**{k: ms(v) for k, v in medians.items()})
        )
        extra = {}
        for level in levels:
            await _batches(server.base_url, level, None, result)  # the generation's own memory
            async with PeakRss(server.pid, interval=0.005) as rss:
                await _batches(server.base_url, level, big_next, result)
            extra[level] = rss.grew
            result.note(
                f"concurrency {level}: peak RSS beyond tiny-image generations {mb(rss.grew)}"
            )
        low, high = levels[0], levels[-1]
        per_download = (extra[high] - extra[low]) / (high - low)
        result.add(
            "peak memory per extra concurrent 4 MB download",
            mb(per_download),
            f"<= {mb(TARGET_PER_DOWNLOAD)} (flat; buffered would be >= 4 MiB)",
            per_download <= TARGET_PER_DOWNLOAD,
        )
        imagegen.close()
        bare.close()
    return result


async def _batches(
    base_url: str, level: int, big_next: Callable[[int], None] | None, result: Result
) -> None:
    """Three batches of ``level`` simultaneous generations (4 MB images with ``big_next``)."""
    for _ in range(3):
        if big_next is not None:
            big_next(level)
        clients = [Client(base_url) for _ in range(level)]
        samples = await all_at_once([Generate(client) for client in clients])
        for client in clients:
            client.close()
        if samples.errors():
            first = samples.errors()[0]
            result.note(f"concurrency {level}: error {first.status} {first.error}")


async def _status(reply) -> int:
    return (await reply).status


async def _timed(call) -> float:

    start = time.perf_counter()
    status = await call()
    if status != 200:
        raise RuntimeError(f"image path: a request answered {status}")
    return time.perf_counter() - start
