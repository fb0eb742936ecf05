"""overhead: the latency imagegen adds over calling the double directly for the same image.

One open-loop run sends, interleaved, generations through imagegen and the same work done
directly against the double (a sync-mode create with the inputs imagegen sends, then the file
download), each at the target rate. Both see the same machine noise; the overhead is the
difference of their percentiles. A light-load run (10/s) comes first, for context.
"""

from __future__ import annotations

from bench.common import BODY, GENERATE, INSTANT, Direct, Generate, Options
from bench.load import Client, Samples, open_loop, percentile
from bench.procs import running, usage
from bench.report import Result, ms

NAME = "overhead"
TARGET_RATE = 100.0
LIGHT_RATE = 10.0
TARGET_P50, TARGET_P99 = 0.003, 0.015
LIMITS = (
    "CPU. imagegen spends the CPU per generation `throughput` shows, so even at 10/s it adds "
    "about that much to each request, and at 100/s requests arriving together queue behind each "
    "other on the one core a Python process uses: the added latency is that backlog. Where the "
    "CPU goes: the `targets` section and the notes below."
)


def _latencies(samples: Samples, label: str) -> list[float]:
    return [s.seconds for s in samples.ok(label)]


async def run(options: Options) -> Result:
    result = Result(
        NAME,
        "Latency imagegen adds over calling the double directly for the same image (sync-mode "
        "create + download), images stored; both paths interleaved in one open-loop run.",
        limits=LIMITS,
    )
    duration = options.pick(20.0, 4.0)
    with running(INSTANT, {}) as (double, server):
        imagegen = Client(server.base_url)
        first = await imagegen.post(GENERATE, json_body=BODY)
        direct = await Direct.like(imagegen, double.base_url, first.json())
        generate = Generate(imagegen)
        for _ in range(20):  # warm: connections, the schema cache, code paths
            await generate()
            await direct()
        for rate in (LIGHT_RATE, TARGET_RATE):
            before = usage(server.pid)
            samples = await open_loop(
                [("imagegen", generate), ("direct", direct)], rate=2 * rate, duration=duration
            )
            cpu = usage(server.pid).cpu_seconds - before.cpu_seconds
            _report(result, samples, rate, cpu)
        direct.close()
        imagegen.close()
    return result


def _report(result: Result, samples: Samples, rate: float, cpu: float) -> None:
    via, bare = _latencies(samples, "imagegen"), _latencies(samples, "direct")
    errors = len(samples.errors())
    at_target = rate == TARGET_RATE
    label = f"@{rate:g}/s"
    for q, target in ((50, TARGET_P50), (99, TARGET_P99)):
        added = percentile(via, q) - percentile(bare, q)
        times = f" ({added / target:.0f}x the target)" if at_target and added > target else ""
        result.add(
            f"added p{q} {label}",
            ms(added) + times,
            f"<= {ms(target)}" if at_target else "(context)",
            (added <= target and errors == 0) if at_target else None,
        )
    result.note(
        f"{label}: imagegen p50 {ms(percentile(via, 50))} p99 {ms(percentile(via, 99))}, "
        f"direct p50 {ms(percentile(bare, 50))} p99 {ms(percentile(bare, 99))}; "
        f"{len(via)} + {len(bare)} ok, {errors} errors; imagegen CPU "
        f"{cpu / max(1, len(via)) * 1000:.1f} ms per generation"
    )
