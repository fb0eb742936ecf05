"""in-flight-workers: the ``in-flight`` benchmark on ``imagegen serve --workers 2`` and
PostgreSQL: many concurrent synchronous generations, the double holding each create for 5 s.

Memory is that of the serve process and both workers, summed. Each worker keeps PostgreSQL's
default pool (10, as many again in a burst); a new job may wait 30 s for its turn at the pool
rather than 5 s, as a deployment sized for this many generations at once would set it (the
writes of admitted jobs go first and wait as long as it takes).
"""

from __future__ import annotations

from tests.db import postgres_database

from bench import inflight
from bench.common import Options
from bench.report import Result

NAME = "in-flight-workers"
TARGET_P99 = 6.5
LIMITS = (
    "The CPU, by arithmetic. Each generation costs imagegen ~9 ms of CPU (the request, the "
    "create and its 5 s wait, decoding, verifying and storing the image, several database "
    "transactions), so 10,000 of them are ~90 s of CPU; the p99 target leaves 1.5 s over the "
    "5 s hold, in which two cores give 3 s: at most ~0.3 ms a generation, 30 times less than "
    "today. On this shared machine imagegen's workers get about 1 of the 2 cores (the machine's "
    "other users, PostgreSQL, the double and the load generator take the rest; see the CPU "
    "note), so the requests queue for a minute. Every job admitted ends with its image (its "
    "writes go before new jobs and wait for a connection), so no create is paid for in vain; "
    "new jobs still waiting for their turn at the pool after the 30 s timeout are refused "
    "(503 with Retry-After, nothing stored or sent upstream). The connections reset are the "
    "kernel's: 10,000 connecting within 2 s overflow the accept queue while the busy workers "
    "accept slowly (the ListenOverflows counter), and a handshake left waiting through the "
    "kernel's retries is reset. imagegen asks for a backlog of every connection it may serve "
    "(IMAGEGEN_LISTEN_BACKLOG), but net.core.somaxconn caps it at 4096 here; raising it is the "
    "deployment's fix. The memory per generation is the peak growth over the generations sent; "
    "fewer than that were in flight at the peak, so it overstates the cost of one; what is left "
    "is mostly Python objects (~29 KB traced by tracemalloc per held generation: the request's "
    "ASGI and FastAPI frames, the upstream request on aiohttp and httpx, the job's tasks)."
)


async def run(options: Options) -> Result:
    count = options.pick(10_000, 1_000)
    result = Result(
        NAME,
        f"{count} concurrent synchronous generations on `--workers 2` and PostgreSQL (a fresh "
        f"database); the double holds each create {inflight.HOLD:g} s, then answers with the "
        "image inline; every image verified and stored. Guards lifted as in `in-flight`.",
        limits=LIMITS,
    )
    async with postgres_database() as database_url:
        env = {
            "IMAGEGEN_DATABASE_URL": database_url,
            "IMAGEGEN_WORKERS": "2",
            "IMAGEGEN_DATABASE_POOL_TIMEOUT": "30",
        }
        return await inflight.measure(
            result, count, env, ramp=options.pick(2.0, 0.5), target_p99=TARGET_P99
        )
