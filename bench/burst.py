"""burst: many requests at once against a double limited to 600 creates a minute.

The double's create bucket holds ``burst`` tokens and refills at 10 a second (Replicate's 600
a minute); imagegen runs with its own guards at their defaults (it paces creates at 600 a
minute). What is asked of imagegen: no 429 reaches a client while its deadline allows waiting;
the double's limit is never exceeded (the double refuses what is over it, so what counts is how
often imagegen knocked anyway: its 429s); and once the first burst is out, generations finish
at the limit's rate, within 5 %.
"""

from __future__ import annotations

from collections import Counter

from bench.common import BODY, GENERATE, INSTANT, Generate, Options
from bench.load import Client, all_at_once
from bench.procs import running
from bench.report import Result

NAME = "burst"
RATE_PER_MIN = 600.0


async def run(options: Options) -> Result:
    count, burst = options.pick((1000, 600), (200, 100))
    timeout = options.pick(120, 60)
    result = Result(
        NAME,
        f"{count} requests at once; the double allows {RATE_PER_MIN:g} creates/min with a "
        f"burst of {burst}; imagegen's deadline {timeout} s.",
    )
    double_options = {**INSTANT, "create_rate": RATE_PER_MIN, "create_burst": burst}
    env = {"IMAGEGEN_REQUEST_TIMEOUT": str(timeout)}
    with running(double_options, env, guards=True) as (double, server):
        imagegen = Client(server.base_url)
        await imagegen.post(GENERATE, json_body=BODY)  # the schema read, outside the burst
        double.ctl.reset()
        double.ctl.configure(create_rate=RATE_PER_MIN, create_burst=burst)
        clients = [Client(server.base_url) for _ in range(count)]  # a connection each
        samples = await all_at_once([Generate(client) for client in clients])
        stats = double.ctl.stats()
        for client in (imagegen, *clients):
            client.close()
    statuses = Counter(s.status for s in samples.items)
    ok = sorted(s.started + s.seconds for s in samples.ok())
    limit = RATE_PER_MIN / 60
    # The sustained rate: completions after the first two seconds (whatever burst went out at
    # once, imagegen's or the double's), over the time they took.
    steady = [t for t in ok if t > ok[0] + 2.0] if ok else []
    rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    result.add("client-visible 429s", str(statuses.get(429, 0)), "0", statuses.get(429, 0) == 0)
    result.add(
        "other failures",
        str(len(samples.items) - len(ok) - statuses.get(429, 0)),
        "0",
        len(ok) + statuses.get(429, 0) == count,
    )
    allowed = burst + RATE_PER_MIN
    peak = stats["max_creates_per_60s"]
    result.add("creates in any 60 s (double)", str(peak), f"<= {allowed:g}", peak <= allowed)
    result.add(
        "rate after the burst",
        f"{rate:.2f}/s",
        f">= {limit * 0.95:g}/s (the limit -5%)",
        rate >= limit * 0.95,
    )
    result.note(
        f"statuses {dict(statuses)}; creates accepted {stats['creates']['total']}, refused with "
        f"429: {stats['creates_rate_limited']}; "
        f"last success at {ok[-1] if ok else float('nan'):.1f} s; imagegen's own guards at "
        "their defaults (600 creates/min, bursts of 60, 100 at once, 1,000 queued)"
    )
    return result
