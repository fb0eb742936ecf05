"""``python -m bench`` (``make bench``): run the benchmarks, print the table, write BENCHMARKS.md.

    python -m bench                      # everything, full size; writes BENCHMARKS.md
    python -m bench --only overhead      # one (or a comma-separated few)
    python -m bench --quick              # scaled down: checks the benchmarks work (~2 min);
                                         # writes bench/results/quick.md, not BENCHMARKS.md

Each benchmark runs ``imagegen serve`` and the Replicate double as real processes on loopback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    burst,
    clients,
    floors,
    image_path,
    inflight,
    inflight_workers,
    keys,
    overhead,
    profile,
    startup,
    sync_wait,
    targets,
    throughput,
    workers,
)
from bench.common import Options
from bench.machine import describe
from bench.procs import raise_fd_limit, reap
from bench.report import Result, details, summary

Benchmark = Callable[[Options], Awaitable[Result]]
BENCHMARKS: dict[str, Benchmark] = {
    module.NAME: module.run
    for module in (
        overhead,
        throughput,
        inflight,
        burst,
        image_path,
        startup,
        clients,
        profile,
        keys,
        sync_wait,
        targets,
        floors,
        workers,
        inflight_workers,
    )
}
ROOT = Path(__file__).resolve().parents[1]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="", help=f"comma-separated benchmarks: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--quick", action="store_true", help="a scaled-down run")
    parser.add_argument("--output", type=Path, help="where to write the report")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()] or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    args.names = names
    return args


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def render(results: list[Result], options: Options, command: str, load_at_start: str = "") -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    scale = "quick (scaled-down)" if options.quick else "full"
    lines = [
        "# Benchmarks",
        "",
        f"Latest {scale} run, {stamp}: `{command}`. Reproduce with `make bench` "
        "(`.venv/bin/python -m bench`); `--only NAME` runs one, `--quick` a scaled-down pass.",
        "",
        "Machine:",
        "",
        *[f"- {line}" for line in describe()],
        f"- load average (1, 5, 15 min): {load_at_start or '?'} at the start, {_load()} at the "
        "end (the machine may be shared: compare numbers within one run)",
        "",
        summary(results),
        "",
        "## Details",
        "",
    ]
    for result in results:
        lines += [details(result), ""]
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    options = Options(quick=args.quick)
    load_at_start = _load()
    raise_fd_limit()
    results: list[Result] = []
    for name in args.names:
        print(f"== {name} ...", flush=True)
        started = time.monotonic()
        result = await BENCHMARKS[name](options)
        result.seconds = time.monotonic() - started
        results.append(result)
        print(summary([result]), "\n", *[f"  - {n}\n" for n in result.notes], flush=True)
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    report = render(results, options, command.strip(), load_at_start)
    print(report)
    if not args.no_write:
        default = ROOT / ("bench/results/quick.md" if options.quick else "BENCHMARKS.md")
        path = args.output or default
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report + "\n" + _kept_sections(path))
        print(f"wrote {path}")
    return 0


KEPT = ("notes", "peer")


def _kept_sections(path: Path) -> str:
    """The sections of ``path`` this run does not measure, kept across rewrites: the written
    notes on the profiles and the peer comparison (``make bench-peer``)."""
    text = path.read_text() if path.exists() else ""
    kept = ""
    for name in KEPT:
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if start in text and end in text:
            kept += "\n" + start + text.split(start, 1)[1].split(end, 1)[0] + end + "\n"
    return kept


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    try:
        import uvloop

        sys.exit(uvloop.run(main()))
    finally:
        reap()
