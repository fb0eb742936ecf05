#!/usr/bin/env python3
"""Closed-loop load generator for POST /v1/images/generations (asyncio + aiohttp).

CONC workers each send one request at a time for DURATION seconds; every response body is
parsed and counted as ok only if HTTP 200 and data[0] has url or b64_json.
Latency percentiles come from all completed requests (ok or not); errors are broken down.

Usage: loadgen.py URL --model M [--conc 64] [--duration 20] [--api-key K]
                  [--response-format url|b64_json] [--timeout 60] [--label L]
Prints one line: PYRESULT requests=.. ok=.. ... p50_ms=.. p99_ms=..  (+ ERRORS line if any)
Note: this client is Python, so on a 2-core box it competes for CPU with the server under test
more than wrk does; prefer wrk for max-throughput numbers, use this for correctness-checked runs.
"""

import argparse
import asyncio
import collections
import json
import time

import aiohttp


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, round(p / 100.0 * len(sorted_vals) + 0.5) - 1))
    return sorted_vals[k]


async def run(a):
    body = json.dumps(
        {
            "model": a.model,
            "prompt": a.prompt,
            "n": 1,
            "size": a.size,
            "response_format": a.response_format,
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    if a.api_key:
        headers["Authorization"] = f"Bearer {a.api_key}"
    lat_ok, lat_all = [], []
    errors = collections.Counter()
    ok = 0
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=a.timeout)
    start = time.perf_counter()
    deadline = start + a.duration

    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:

        async def worker():
            nonlocal ok
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    async with s.post(a.url, data=body, headers=headers) as r:
                        raw = await r.read()
                        dt = (time.perf_counter() - t) * 1000
                        lat_all.append(dt)
                        if r.status != 200:
                            errors[f"http_{r.status}"] += 1
                            continue
                        try:
                            d = json.loads(raw)["data"][0]
                            good = bool(d.get("url") or d.get("b64_json"))
                        except Exception:
                            good = False
                        if good:
                            ok += 1
                            lat_ok.append(dt)
                        else:
                            errors["bad_body"] += 1
                except TimeoutError:
                    errors["timeout"] += 1
                except aiohttp.ClientError as e:
                    errors[type(e).__name__] += 1
                except OSError as e:
                    errors[f"OSError_{e.errno}"] += 1

        await asyncio.gather(*(worker() for _ in range(a.conc)))
    el = time.perf_counter() - start
    lat_all.sort()
    nerr = sum(errors.values())
    total = ok + nerr
    print(
        f"PYRESULT requests={total} ok={ok} errors={nerr} duration_s={el:.2f} "
        f"rps_total={total / el:.1f} rps_ok={ok / el:.1f} "
        f"success_pct={100.0 * ok / total if total else 0:.2f} "
        f"lat_mean_ms={sum(lat_all) / len(lat_all) if lat_all else float('nan'):.2f} "
        f"p50_ms={pct(lat_all, 50):.2f} p90_ms={pct(lat_all, 90):.2f} "
        f"p99_ms={pct(lat_all, 99):.2f} "
        f"p999_ms={pct(lat_all, 99.9):.2f} max_ms={lat_all[-1] if lat_all else float('nan'):.2f}",
        flush=True,
    )
    if errors:
        print("ERRORS " + " ".join(f"{k}={v}" for k, v in errors.most_common()), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--model", required=True)
    ap.add_argument("--conc", type=int, default=64)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--api-key", default="")
    ap.add_argument("--response-format", default="url")
    ap.add_argument("--prompt", default="a red square on a white background")
    ap.add_argument("--size", default="1024x1024")
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except Exception:
        pass
    asyncio.run(run(a))


if __name__ == "__main__":
    main()
