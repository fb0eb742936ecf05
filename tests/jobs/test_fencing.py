"""Leases that cannot pay twice: an instance whose event loop stalls past its lease, while another
adopts its job, stops working on the job and creates nothing; the adopter resumes it, and the
Replicate double sees one prediction.

Two runners over one PostgreSQL database, each on its own event loop (the stalled one in a
thread, blocked by ``time.sleep`` at its first create: before the pending create is written, or
between writing it and sending the create)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from tests.db import postgres_database
from tests.fakes.replicate_double import DoubleConfig, ReplicateDouble
from tests.fakes.replicate_models import FLUX_SCHNELL_REF

from imagegen.catalog import Catalog
from imagegen.db import GenerationStore, open_store
from imagegen.errors import LeaseLost
from imagegen.jobs.runner import JobRunner
from imagegen.models import GenerationRequest, JobStatus
from imagegen.providers.replicate import ReplicateProvider

TOKEN = "r8_test"
LEASE = 1.0  # seconds
# Seconds the stalled loop is blocked: longer than the lease, and than the adopter waits before it
# looks upstream for a pending create's prediction (``orphans.SETTLE``).
STALL = 5.0
REQUEST = GenerationRequest(FLUX_SCHNELL_REF, "a lighthouse", 1, 512, 512)


class StalledStore:
    """A store whose first ``begin_create`` blocks the event loop (``time.sleep``) for
    ``STALL`` seconds, before the write or after it."""

    def __init__(self, store: GenerationStore, *, after_write: bool) -> None:
        self._store = store
        self._after = after_write
        self.stalled = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def begin_create(self, *args: Any, **kwargs: Any) -> None:
        first = not self.stalled.is_set()
        self.stalled.set()
        if first and not self._after:
            time.sleep(STALL)
        await self._store.begin_create(*args, **kwargs)
        if first and self._after:
            time.sleep(STALL)


def runner(store: Any, http: httpx.AsyncClient, base_url: str, owner: str) -> JobRunner:
    provider = ReplicateProvider(
        http, api_token=TOKEN, base_url=base_url, wait_seconds=0, poll_interval=0.05
    )
    return JobRunner(
        store=store,
        catalog=Catalog(default=provider),
        ingestor=None,
        timeout=30.0,
        owner=owner,
        lease_seconds=LEASE,
        share_queue=True,
        claim_interval=0.1,
    )


class StalledInstance:
    """Instance "a" on its own event loop in a thread: submits one job, runs it until it ends
    or leaves it, then closes."""

    def __init__(self, url: str, base_url: str, *, after_write: bool) -> None:
        self._url, self._base_url, self._after = url, base_url, after_write
        self.job: concurrent.futures.Future[str] = concurrent.futures.Future()
        self.left: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    def __enter__(self) -> StalledInstance:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=30)

    async def _main(self) -> None:
        store = StalledStore(await open_store(self._url), after_write=self._after)
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                instance = runner(store, http, self._base_url, "a")
                await instance.start()
                job = await instance.submit(REQUEST)
                self.job.set_result(job.id)
                task = instance._tasks[job.id]
                await asyncio.wait([task])  # it ends: finished, or left to the adopter
                left = task.cancelled() or isinstance(task.exception(), LeaseLost)
                self.left.set_result(left)
                await asyncio.sleep(1.0)  # time to do harm, were it to go on
                await instance.aclose()
        except BaseException as exc:
            for future in (self.job, self.left):
                if not future.done():
                    future.set_exception(exc)
        finally:
            await store.aclose()


@pytest.fixture
def double() -> Iterator[ReplicateDouble]:
    with ReplicateDouble(DoubleConfig(duration=1.0, queue_time=0.05)) as running:
        yield running


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with postgres_database() as value:
        opened = await open_store(value)  # migrated once, before the instances race
        await opened.aclose()
        yield value


@pytest.mark.parametrize("after_write", [False, True], ids=["before-fence", "after-fence"])
async def test_a_loop_stalled_past_its_lease_stops_and_the_adopter_pays_once(
    url: str, double: ReplicateDouble, after_write: bool
) -> None:
    with StalledInstance(url, double.base_url, after_write=after_write) as stalled:
        job_id = await asyncio.wrap_future(stalled.job)
        store = await open_store(url)
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                adopter = runner(store, http, double.base_url, "b")
                await adopter.start()
                try:
                    done = await asyncio.wait_for(adopter.wait(job_id), 30)
                    left = await asyncio.wait_for(asyncio.wrap_future(stalled.left), 30)
                finally:
                    await adopter.aclose()
        finally:
            await store.aclose()
    assert done.status is JobStatus.SUCCEEDED
    stats = double.stats()
    assert stats["creates"]["total"] == 1, stats["predictions"]
    assert [p["status"] for p in stats["predictions"]] == ["succeeded"]
    assert left  # the stalled instance stopped working on the job
