"""Job events between processes over Redis pub/sub: two ``JobEvents``, each with its own bus and
client, as two processes have. A listener on one hears the other's events, once; its own are
not echoed back; while Redis is down a new listener does not wait for it; a bus reconnects and
subscribes again after Redis restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from tests.support.redis import PrivateRedis, unique_prefix

from imagegen.jobs.events import JobEvents
from imagegen.models import (
    Generation,
    GenerationRequest,
    JobStatus,
    PredictionRecord,
    StoredImage,
)
from imagegen.shared.client import SharedRedis, open_redis
from imagegen.shared.events import RedisEventBus

Connect = Callable[[], SharedRedis]


def job(status: JobStatus = JobStatus.RUNNING) -> Generation:
    request = GenerationRequest(prompt="a fox", model="m", num_images=1, width=512, height=512)
    return Generation(
        "gen_1",
        status,
        request,
        "replicate",
        datetime.now(UTC),
        predictions=(PredictionRecord("p1", {"prompt": "a fox", "seed": 7}, 1),),
        images=(StoredImage("ab/cd.png", "image/png", 512, 512, 1234),),
        metadata={"team": "blue"},
    )


@asynccontextmanager
async def process(redis: SharedRedis, reconnect_delay: float = 1.0) -> AsyncIterator[JobEvents]:
    """One process's events, attached to a bus of its own."""
    events = JobEvents()
    bus = RedisEventBus(redis, events.deliver, reconnect_delay=reconnect_delay)
    events.attach(bus)
    await bus.start()
    try:
        yield events
    finally:
        await bus.aclose()


async def test_a_listener_hears_another_processs_events_once(connect: Connect) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(process(connect()))
        b = await stack.enter_async_context(process(connect()))
        with b.subscribe("gen_1") as on_b, a.subscribe("gen_1") as on_a:
            await on_b.ready()
            await on_a.ready()
            sent = job()
            a.state(sent)
            a.progress("gen_1", 0.5)
            heard = [await on_b.next(5), await on_b.next(5)]
            assert [(e.kind, e.generation_id) for e in heard if e] == [
                ("state", "gen_1"),
                ("progress", "gen_1"),
            ]
            assert heard[0] is not None
            assert heard[0].generation == sent  # the job as A's transition left it
            assert heard[1] is not None
            assert heard[1].progress == 0.5
            # A's own listener got each event once, from A itself: nothing echoed back.
            own = [await on_a.next(1) for _ in range(3)]
            assert [e.kind for e in own if e] == ["state", "progress"]
            assert own[0] is not None
            assert own[0].generation is not None
            assert await on_b.next(0.3) is None


async def test_no_event_reaches_a_process_that_follows_no_such_job(connect: Connect) -> None:
    async with process(connect()) as a, process(connect()) as b:
        with b.subscribe("gen_2") as other:
            await other.ready()
            a.state(job())  # gen_1: nobody on B follows it
            assert await other.next(0.5) is None


async def test_the_bus_subscribes_again_after_redis_restarts(tmp_path: Path) -> None:
    with PrivateRedis(tmp_path) as server:
        redis_a = open_redis(server.url, unique_prefix())
        redis_b = open_redis(server.url, redis_a.prefix)
        try:
            async with process(redis_a, 0.1) as a, process(redis_b, 0.1) as b:
                with b.subscribe("gen_1") as listener:
                    await listener.ready()
                    server.stop()
                    await asyncio.sleep(1.5)  # time for the bus to notice, on a busy machine
                    with b.subscribe("gen_3") as meanwhile:  # Redis down: no wait for it
                        started = asyncio.get_running_loop().time()
                        await meanwhile.ready()
                        assert asyncio.get_running_loop().time() - started < 0.5
                    server.start()

                    async def heard() -> None:
                        while True:
                            a.progress("gen_1", 0.25)
                            event = await listener.next(0.2)
                            if event is not None:
                                return

                    await asyncio.wait_for(heard(), timeout=15)
        finally:
            await redis_a.aclose()
            await redis_b.aclose()
