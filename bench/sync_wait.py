"""sync-wait: Replicate's sync mode (``Prefer: wait=N``) against a plain create and polling.

imagegen's Replicate provider runs against the double (in a thread) through a transport that
adds a network round trip (``RTT``) to every call, for models that take 1 s and 3 s, with
imagegen's defaults otherwise (polling every 0.5 s). For each create mode it measures: the time
to the outputs (p50 of concurrent generations), the API calls per generation, how long the
prediction id stays unknown after the create is sent (what a ``kill -9`` or a cancel must wait
out), and a cancel sent 0.1 s into a 1 s model: when the prediction stops upstream, and whether
it ran to the end (billed in full) first.

    .venv/bin/python -m bench --only sync-wait --no-write     # ~30 s
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from tests.fakes.replicate_double import DoubleConfig, ReplicateDouble
from tests.fakes.replicate_models import FLUX_SCHNELL_REF

from bench.common import Options
from bench.report import Result, ms
from imagegen.models import GenerationRequest, PredictionRecord
from imagegen.providers.base import GenerationContext
from imagegen.providers.replicate import ReplicateProvider

NAME = "sync-wait"
RTT = 0.1  # seconds: a round trip to api.replicate.com from a typical host
POLL = 0.5  # IMAGEGEN_POLL_INTERVAL's default
MODES = {"sync (wait=5)": 5, "plain create (wait=0)": 0}
REQUEST = GenerationRequest(FLUX_SCHNELL_REF, "a lighthouse in a storm", 1, 512, 512)


class Latency(httpx.AsyncBaseTransport):
    """Adds ``rtt`` to every request, half before sending and half before the answer."""

    def __init__(self, inner: httpx.AsyncBaseTransport, rtt: float) -> None:
        self._inner, self._half = inner, rtt / 2

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self._half)
        response = await self._inner.handle_async_request(request)
        await asyncio.sleep(self._half)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Run:
    seconds: float = 0.0
    id_known_after: float = 0.0


async def generate(provider: ReplicateProvider, run: Run) -> None:
    started = time.perf_counter()

    async def known(record: PredictionRecord) -> None:
        run.id_known_after = time.perf_counter() - started

    deadline = asyncio.get_running_loop().time() + 60
    await provider.generate(REQUEST, GenerationContext(deadline, on_prediction=known))
    run.seconds = time.perf_counter() - started


async def with_provider(
    double: ReplicateDouble, wait: int, body: Callable[[ReplicateProvider], Awaitable[None]]
) -> None:
    transport = Latency(httpx.AsyncHTTPTransport(), RTT)
    async with httpx.AsyncClient(transport=transport, timeout=30) as http:
        provider = ReplicateProvider(
            http,
            api_token=double.config.token,
            base_url=double.base_url,
            wait_seconds=wait,
            poll_interval=POLL,
        )
        await body(provider)


async def latency(double: ReplicateDouble, wait: int, duration: float, n: int) -> list[Run]:
    double.reset()
    double.configure(duration=duration, queue_time=0)
    runs = [Run() for _ in range(n)]

    async def body(provider: ReplicateProvider) -> None:
        await provider.generate(REQUEST, GenerationContext(asyncio.get_running_loop().time() + 60))
        await asyncio.gather(*(generate(provider, run) for run in runs))

    await with_provider(double, wait, body)  # the first generation warms the schema cache
    return runs


async def cancel_early(double: ReplicateDouble, wait: int) -> tuple[float, str]:
    """Cancel 0.1 s into a 1 s model: seconds from the cancel until the prediction stopped
    upstream, and the status it stopped in."""
    double.reset()
    double.configure(duration=1.0, queue_time=0)
    stopped: dict[str, float] = {}

    async def body(provider: ReplicateProvider) -> None:
        await provider.generate(REQUEST, GenerationContext(asyncio.get_running_loop().time() + 60))
        double.reset()
        double.configure(duration=1.0, queue_time=0)
        task = asyncio.ensure_future(generate(provider, Run()))
        await asyncio.sleep(0.1)
        stopped["cancel"] = time.time()
        task.cancel()
        while True:  # until the prediction ends upstream, canceled or not
            [prediction] = double.stats()["predictions"] or [{"status": "none"}]
            if prediction["status"] in ("succeeded", "canceled", "failed"):
                stopped["end"], stopped["status"] = prediction["completed"], prediction["status"]
                return
            await asyncio.sleep(0.01)

    await with_provider(double, wait, body)
    return stopped["end"] - stopped["cancel"], str(stopped["status"])


async def run(options: Options) -> Result:
    result = Result(NAME, __doc__.split("\n\n")[1].replace("\n", " "))
    n = options.pick(8, 3)
    with ReplicateDouble(DoubleConfig(queue_time=0)) as double:
        for label, wait in MODES.items():
            for duration in (1.0, 3.0):
                runs = await latency(double, wait, duration, n)
                stats = double.stats()
                calls = (stats["creates"]["total"] + stats["gets"]) / (n + 1)
                p50 = statistics.median(r.seconds for r in runs)
                blind = statistics.median(r.id_known_after for r in runs)
                result.add(
                    f"{label}: outputs of a {duration:g} s model (p50)",
                    ms(p50),
                    "(context)",
                )
                result.note(
                    f"{label}, {duration:g} s model: outputs after {ms(p50)} (p50 of {n}), "
                    f"{calls:.1f} API calls per generation, prediction id unknown for "
                    f"{ms(blind)} after the create is sent"
                )
            after, status = await cancel_early(double, wait)
            result.add(
                f"{label}: a cancel 0.1 s into a 1 s model stops it upstream after",
                f"{ms(after)} ({status})",
                "<= 1 s, canceled",
                after <= 1.0 and status == "canceled",
            )
    return result
