#!/usr/bin/env python3
"""Sample RSS/PSS and CPU of a process tree (root PID + descendants) until killed or --seconds.
Usage: procmon.py PID [PID...] [--interval 0.5] [--seconds N] [--label NAME]
Prints at exit:  PROCMON label=.. pids=.. rss_mb_start=.. rss_mb_peak=.. rss_mb_end=..
pss_mb_peak=.. cpu_pct_avg=.. (cpu_pct is % of one core, summed over the tree; RSS sums
double-count shared pages, PSS does not)"""

import argparse
import os
import signal
import time

HZ = os.sysconf("SC_CLK_TCK")


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def tree(roots):
    seen, stack = [], list(roots)
    while stack:
        p = stack.pop()
        if p in seen or not os.path.exists(f"/proc/{p}"):
            continue
        seen.append(p)
        stack += children(p)
    return seen


def rss_pss_kb(pid):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        parts = s[s.rindex(")") + 2 :].split()
        return int(parts[11]) + int(parts[12])
    except (OSError, ValueError, IndexError):
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pids", type=int, nargs="+")
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--seconds", type=float, default=3600)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    stop = False

    def onsig(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, onsig)
    signal.signal(signal.SIGINT, onsig)
    t0 = time.monotonic()
    ticks0 = {p: cpu_ticks(p) for p in tree(a.pids)}
    samples = []
    while True:
        ps = tree(a.pids)
        r = [rss_pss_kb(p) for p in ps]
        samples.append((sum(x[0] for x in r), sum(x[1] for x in r), len(ps)))
        if stop or time.monotonic() - t0 > a.seconds:
            break
        time.sleep(a.interval)
    el = time.monotonic() - t0
    ps = tree(a.pids)
    dticks = sum(cpu_ticks(p) - ticks0.get(p, 0) for p in ps)

    def mb(kb):
        return kb / 1024.0

    print(
        f"PROCMON label={a.label or '-'} pids={','.join(map(str, ps))} nproc={samples[-1][2]} "
        f"rss_mb_start={mb(samples[0][0]):.1f} rss_mb_peak={mb(max(s[0] for s in samples)):.1f} "
        f"rss_mb_end={mb(samples[-1][0]):.1f} pss_mb_peak={mb(max(s[1] for s in samples)):.1f} "
        f"cpu_pct_avg={100.0 * dticks / HZ / el:.0f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
