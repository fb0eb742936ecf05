"""workers: generations per second with images stored, ``imagegen serve --workers 2`` against
``--workers 1``, on PostgreSQL (a fresh database each), in the same run.

The same closed loop as ``throughput`` (the double answering at once, every image downloaded,
verified and stored) at one concurrency, one server after the other. The CPU is that of the
serve process and every worker below it, summed, so the CPU per generation compares too.
"""

from __future__ import annotations

import os

from tests.db import postgres_database

from bench.common import BODY, GENERATE, INSTANT, Generate, Options
from bench.load import Client, closed_loop, percentile
from bench.procs import machine_busy, own_cpu, postgres_cpu, running, tree_usage, usage
from bench.report import Result, ms

NAME = "workers"
TARGET_RATIO = 1.7
CONCURRENCY = 64
LIMITS = (
    "The two cores. With one worker imagegen already uses about one core and PostgreSQL, the "
    "double and the load generator a good part of the other; with two workers the machine is "
    "busy (the notes give each one's share), and imagegen gets the CPU that is left, not a "
    "second core. What says how the workers scale is the CPU per generation, summed over "
    "processes: if it does not grow with two workers, throughput grows with the cores "
    "imagegen is given. 1.7x here would need imagegen to use 1.7 cores beside what "
    "PostgreSQL and the double need for that throughput: more than this machine's two."
)


async def run(options: Options) -> Result:
    duration = options.pick(10.0, 3.0)
    result = Result(
        NAME,
        f"Generations/s with images stored, `--workers 2` vs `--workers 1`, on PostgreSQL (a "
        f"fresh database for each), closed loop of {CONCURRENCY} connections for {duration:g} s "
        "each, the double answering at once; one after the other in one run.",
        limits=LIMITS,
    )
    rates: dict[int, float] = {}
    for workers in (1, 2):
        rates[workers] = await _rate(result, workers, duration)
    ratio = rates[2] / rates[1] if rates[1] else float("nan")
    result.add("generations/s, --workers 1", f"{rates[1]:.1f}/s", "(context)")
    result.add("generations/s, --workers 2", f"{rates[2]:.1f}/s", "(context)")
    result.add(
        "--workers 2 / --workers 1", f"{ratio:.2f}x", f">= {TARGET_RATIO}x", ratio >= TARGET_RATIO
    )
    return result


async def _rate(result: Result, workers: int, duration: float) -> float:
    async with postgres_database() as database_url:
        env = {"IMAGEGEN_DATABASE_URL": database_url, "IMAGEGEN_WORKERS": str(workers)}
        answering: dict[str, object] = {**INSTANT}
        with running(answering, env) as (double, server):
            imagegen = Client(server.base_url)
            generate = Generate(imagegen, BODY)
            await imagegen.post(GENERATE, json_body=BODY)
            await closed_loop(generate, concurrency=CONCURRENCY, duration=1.0)  # warm each
            before, before_double = tree_usage(server.pid), usage(double.pid)
            before_self, before_machine = own_cpu(), machine_busy()
            before_postgres = postgres_cpu()
            samples, elapsed = await closed_loop(
                generate, concurrency=CONCURRENCY, duration=duration
            )
            after, after_double = tree_usage(server.pid), usage(double.pid)
            after_self, after_machine = own_cpu(), machine_busy()
            after_postgres = postgres_cpu()
            imagegen.close()
    ok, errors = samples.ok(), samples.errors()
    rate = len(ok) / elapsed if not errors else 0.0
    cpu = (after.cpu_seconds - before.cpu_seconds) / max(1, len(ok))
    latencies = [s.seconds for s in ok]
    cores = {
        "imagegen": after.cpu_seconds - before.cpu_seconds,
        "double": after_double.cpu_seconds - before_double.cpu_seconds,
        "load generator": after_self - before_self,
        "PostgreSQL (all its databases)": after_postgres - before_postgres,
    }
    busy, total = (a - b for a, b in zip(after_machine, before_machine, strict=True))
    machine = busy / total * (os.cpu_count() or 1)
    cores["the rest (the machine's other users)"] = machine * elapsed - sum(cores.values())
    spent = ", ".join(f"{name} {seconds / elapsed:.2f}" for name, seconds in cores.items())
    result.note(
        f"--workers {workers}: {len(ok) / elapsed:.1f}/s, {len(errors)} errors, p50 "
        f"{ms(percentile(latencies, 50))} p99 {ms(percentile(latencies, 99))}; imagegen CPU "
        f"per generation (all processes) {cpu * 1000:.1f} ms; cores used: {spent}; whole "
        f"machine {machine:.2f} of {os.cpu_count()}"
        + (f"; first error: {errors[0].status} {errors[0].error}" if errors else "")
    )
    return rate
