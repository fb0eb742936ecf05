"""clients: httpx against aiohttp as imagegen's upstream HTTP client, by measurement.

imagegen talks to providers through one pooled upstream client; httpx's pool is known to
slow down under high concurrency (encode/httpx#3215). Three clients read the same prediction
from the double (``GET /v1/predictions/{id}``, a ~1 KB JSON body) in a closed loop, pools
sized as ``imagegen.services`` sizes them, at rising concurrency: httpx on its own transport,
imagegen's upstream over aiohttp (``imagegen.upstream``, what the provider clients use by
default: the body read under the size cap into an ``httpx.Response``), and aiohttp itself.
The figure that decides is the CPU the client spends per request, since the
double shares the machine.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Awaitable, Callable

import httpx

from bench.common import INSTANT, MODEL, Options
from bench.procs import TOKEN, Double, double_args
from bench.report import Result

NAME = "clients"
Get = Callable[[], Awaitable[int]]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _loop(get: Get, concurrency: int, duration: float) -> tuple[float, float, int]:
    """(requests/s, client CPU s per request, errors)."""
    done = errors = 0
    stop = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done, errors
        while time.perf_counter() < stop:
            try:
                status = await get()
            except (httpx.HTTPError, OSError, TimeoutError, Exception):
                status = 0
            if status == 200:
                done += 1
            else:
                errors += 1

    cpu, started = _cpu(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, used = time.perf_counter() - started, _cpu() - cpu
    return done / elapsed, used / max(1, done), errors


async def run(options: Options) -> Result:
    result = Result(NAME, __doc__.split("\n\n")[1].replace("\n", " "))
    try:
        import aiohttp

        from imagegen.upstream import AiohttpUpstream
    except ImportError:
        result.note("aiohttp is not installed (`pip install aiohttp`): nothing to compare")
        return result
    duration = options.pick(6.0, 2.0)
    levels = options.pick((1, 64, 512), (1, 64))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with Double(*double_args(**INSTANT)) as double:
        async with httpx.AsyncClient(headers=headers) as seed:
            created = await seed.post(
                f"{double.base_url}/v1/models/{MODEL}/predictions",
                json={"input": {"prompt": "x"}},
            )
        url = f"{double.base_url}/v1/predictions/{created.json()['id']}"
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
        upstream = AiohttpUpstream(timeout=httpx.Timeout(30.0), limits=limits)
        async with (
            httpx.AsyncClient(headers=headers, limits=limits) as hx,
            aiohttp.ClientSession(
                headers=headers, connector=aiohttp.TCPConnector(limit=1000)
            ) as aio,
        ):

            async def with_httpx() -> int:
                response = await hx.get(url)
                response.json()
                return response.status_code

            async def with_upstream() -> int:
                response = await upstream.send("GET", url, headers=headers, max_bytes=1 << 24)
                response.json()
                return response.status_code

            async def with_aiohttp() -> int:
                async with aio.get(url) as response:
                    await response.json()
                    return response.status

            for concurrency in levels:
                measured = {}
                clients = (
                    ("httpx", with_httpx),
                    ("imagegen upstream (aiohttp)", with_upstream),
                    ("aiohttp", with_aiohttp),
                )
                for name, get in clients:
                    await _loop(get, min(concurrency, 16), 0.5)  # warm the pool
                    measured[name] = await _loop(get, concurrency, duration)
                hx_cpu, aio_cpu = measured["httpx"][1], measured["aiohttp"][1]
                result.add(
                    f"client CPU per request, concurrency {concurrency}",
                    ", ".join(f"{name} {m[1] * 1e6:.0f} us" for name, m in measured.items())
                    + f" (httpx/aiohttp {hx_cpu / aio_cpu:.1f}x)",
                )
                result.note(
                    f"concurrency {concurrency}: "
                    + ", ".join(
                        f"{name} {rate:.0f} req/s ({errors} errors)"
                        for name, (rate, _, errors) in measured.items()
                    )
                )
            await upstream.aclose()
    return result
