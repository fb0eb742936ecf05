"""in-flight: many concurrent synchronous generations, the double holding each create for 5 s.

The double's ``slow`` fault holds every create for 5 s (one timer each) before answering it in
sync mode, and its outputs come back inline (``output_mode=data_uri``), so each generation is
exactly one held request upstream and imagegen still verifies and stores every image. The
requests start over a short ramp; each latency counts from its own start. A ramp does not keep
the accept queue from overflowing while busy workers accept slowly: the kernel's counters of
overflows and resets are reported with the run, and requests that got no answer are counted by
error. The creates paid for upstream whose request did not end 200 are counted too (target 0: a
request refused or reset before imagegen admitted it makes no create).
"""

from __future__ import annotations

import os
from collections import Counter

from bench.common import BODY, GENERATE, INSTANT, Generate, Options
from bench.load import Call, Client, all_at_once, percentile
from bench.procs import (
    TICKS,
    PeakRss,
    Usage,
    logged_errors,
    machine_busy,
    own_cpu,
    postgres_cpu,
    running,
    tcp_counters,
    tree_usage,
    usage,
)
from bench.report import Result, mb, ms

NAME = "in-flight"
HOLD = 5.0
TARGET_P99 = 6.0
TARGET_BYTES = 15 * 1024
WARMUP = 5  # generations before the measured ones
LIMITS = (
    "One process by design. Running jobs' writes go first at the SQLite writer; a write that "
    "admits a new job waits behind them for the pool timeout at most, then the request gets "
    "503 with Retry-After, having stored and sent nothing (`db/turns.py`, `db/database.py`): "
    "under 10,000 at once the process finishes what it admitted and refuses the rest rather "
    "than stall them all. Behind that, the CPU per generation serialises thousands of "
    "generations on one core. `in-flight-workers` serves the same 10,000 on `--workers 2` "
    "with PostgreSQL."
)


async def run(options: Options) -> Result:
    count = options.pick(10_000, 1_000)
    result = Result(
        NAME,
        f"{count} concurrent synchronous generations; the double holds each create "
        f"{HOLD:g} s, then answers with the image inline; every image verified and stored. "
        "imagegen's queue and concurrency guards are lifted (0 = no limit).",
        limits=LIMITS,
    )
    return await measure(result, count, {}, ramp=options.pick(2.0, 0.5), target_p99=TARGET_P99)


async def measure(
    result: Result, count: int, env: dict[str, str], *, ramp: float, target_p99: float
) -> Result:
    """``count`` held generations at once against an ``imagegen serve`` with ``env``; the
    memory is that of the serve process and every worker below it, summed."""
    env = {"IMAGEGEN_REQUEST_TIMEOUT": "600", "IMAGEGEN_REPLICATE_WAIT": "30", **env}
    with running({**INSTANT, "output_mode": "data_uri"}, env) as (double, server):
        imagegen = Client(server.base_url)
        for _ in range(WARMUP):
            await imagegen.post(GENERATE, json_body=BODY)
        double.ctl.script("slow", route="create", seconds=HOLD, times=count)
        base = tree_usage(server.pid).rss_bytes
        calls = []
        for _ in range(count):
            client = Client(server.base_url)  # one connection per in-flight request
            calls.append(_closing(Generate(client), client))
        before = (
            tree_usage(server.pid),
            usage(double.pid),
            own_cpu(),
            postgres_cpu(),
            machine_busy(),
        )
        tcp_before = tcp_counters()
        async with PeakRss(server.pid, interval=0.1, fds=True, tree=True) as rss:
            samples = await all_at_once(calls, ramp=ramp)
        tcp = {name: value - tcp_before[name] for name, value in tcp_counters().items()}
        after = (
            tree_usage(server.pid),
            usage(double.pid),
            own_cpu(),
            postgres_cpu(),
            machine_busy(),
        )
        stats = double.ctl.stats()
        imagegen.close()
        errors_logged = logged_errors(server)
    ok, errors = samples.ok(), samples.errors()
    latencies = sorted(s.seconds for s in ok)
    per_request = (rss.peak - base) / count
    p99 = percentile([s.seconds for s in samples.items], 99)
    result.add("succeeded", f"{len(ok)}/{count}", "100%", len(ok) == count)
    result.add(
        "memory per in-flight generation",
        f"{per_request / 1024:.1f} KiB",
        "<= 15 KiB",
        per_request <= TARGET_BYTES,
    )
    result.add("p99 latency", ms(p99), f"<= {target_p99:g} s", p99 <= target_p99)
    # A request refused (503) or reset before imagegen admitted it made no create upstream.
    unanswered = stats["creates"]["total"] - WARMUP - len(ok)
    result.add("creates paid for, not answered 200", str(unanswered), "0", unanswered == 0)
    statuses = Counter(s.status for s in samples.items)
    result.note(
        f"statuses {dict(statuses)}; latency p50 {ms(percentile(latencies, 50))}, max "
        f"{ms(latencies[-1] if latencies else float('nan'))}; imagegen RSS {mb(base)} -> peak "
        f"{mb(rss.peak)}; peak open fds {rss.peak_fds}; creates upstream "
        f"{stats['creates']['total']}"
        + (f"; first error: {errors[0].status} {errors[0].error}" if errors else "")
    )
    failures = Counter(_kind(s.error) for s in samples.items if s.status == 0)
    if failures:
        result.note(f"no answer (status 0), by error: {dict(failures)}")
    result.note(f"the kernel's TCP counters during the run (the whole machine): {tcp}")
    result.note(_cpu_spent(before, after))
    for line in errors_logged:
        result.note(f"imagegen logged {line}")
    return result


Snapshot = tuple[Usage, Usage, float, float, tuple[int, int]]


def _cpu_spent(before: Snapshot, after: Snapshot) -> str:
    """Where the machine's CPU went during the run, in CPU seconds."""
    busy, total = (a - b for a, b in zip(after[4], before[4], strict=True))
    wall = total / (os.cpu_count() or 1)  # jiffies of one core: the run's length
    machine = busy / TICKS
    spent = {
        "imagegen (all processes)": after[0].cpu_seconds - before[0].cpu_seconds,
        "double": after[1].cpu_seconds - before[1].cpu_seconds,
        "load generator": after[2] - before[2],
        "PostgreSQL (all its databases)": after[3] - before[3],
    }
    spent["the rest (the machine's other users)"] = machine - sum(spent.values())
    parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in spent.items())
    return f"CPU seconds during the run ({wall / TICKS:.1f} s, {os.cpu_count()} cores): {parts}"


def _kind(error: str | None) -> str:
    """``"HttpError: ConnectionResetError: [Errno 104] ..."`` -> ``ConnectionResetError``."""
    names = [part.strip() for part in (error or "unknown").split(":")]
    return next((name for name in names if name and name != "HttpError"), "unknown")


def _closing(generate: Generate, client: Client) -> Call:
    """``generate``, then close its connection: 10,000 sockets are not kept for the run."""

    async def call() -> int:
        try:
            return await generate()
        finally:
            client.close()

    return call
