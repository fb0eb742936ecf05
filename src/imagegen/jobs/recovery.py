"""Crash recovery and shared work: no job stays unfinished because the process running it died,
and a job waits for whichever instance has room.

Each unfinished job is leased to the instance running it (``lease_owner`` = its instance id,
``lease_expires_at`` renewed every third of ``lease_seconds``). At start-up an instance claims
the unfinished jobs whose lease is its own (it was restarted, ``kill -9`` included), free, or run
out. While it runs it renews the leases of the jobs it has a task for; a renewal that matches a
job another instance holds now (this one stalled past its lease and was adopted) makes it leave
that job at once (``lose``: its task stops, canceling nothing upstream; ``fencing.py``). And it
claims, as many as it has room for (``room``), jobs whose lease is free or ran out: another
replica died, a task of its own ended without settling its job, or the job was written unleased
by a replica with no room (``JobRunner`` on a shared database). The claim is one statement
(``GenerationStore.claim_free``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), every
``claim_interval`` and whenever ``wake`` is called (a job of its own ended). A claim that found
nothing is followed by a pause (``EMPTY_CLAIM_PAUSE`` at most): the wake-ups of a busy instance,
one per job that ends, then share one claim instead of querying once per job. The runner then,
per job:

- past its deadline: cancels its predictions upstream and marks it failed (504's error);
- ``running`` with stored predictions or pending creates (a create is recorded, with its exact
  inputs, before it is sent): ``Provider.resume`` polls the predictions, and for each create
  whose reply never came adopts the prediction it started, found upstream, creating it only
  when there is none; nothing is paid for twice;
- ``queued``, or ``running`` with neither (the crash came before any create was sent): runs it
  as if just submitted.

A graceful shutdown (``JobRunner.aclose``) cancels nothing upstream and releases the leases of
the jobs it stops, so a restart or another replica takes them up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from imagegen.jobs.protocols import GenerationStore
from imagegen.models import Generation

CLAIM_BATCH = 100  # jobs claimed at most in one transaction
EMPTY_CLAIM_PAUSE = 0.1  # seconds after a claim that found nothing before the next may run

log = logging.getLogger(__name__)


class Recovery:
    def __init__(
        self,
        store: GenerationStore,
        *,
        owner: str,
        lease_seconds: float,
        clock: Callable[[], datetime],
        adopt: Callable[[Generation], None],
        running: Callable[[], Collection[str]],
        lose: Callable[[Collection[str]], None] = lambda ids: None,
        room: Callable[[], int] = lambda: CLAIM_BATCH,
        claim_interval: float | None = None,
    ) -> None:
        """``claim_interval``: seconds between claims (default: a third of the lease)."""
        self._store = store
        self._owner = owner
        self._lease = timedelta(seconds=lease_seconds)
        self._clock = clock
        self._adopt = adopt
        self._running = running
        self._lose = lose
        self._room = room
        self._claim_interval = claim_interval or lease_seconds / 3
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """Claim now (a slot came free)."""
        self._woken.set()

    @property
    def lease_expires_at(self) -> datetime:
        return self._clock() + self._lease

    async def at_start(self) -> int:
        """Take back this instance's unfinished jobs, then claim free or expired ones as room
        allows; how many it adopted."""
        own = await self._store.claim_own(self._owner, until=self.lease_expires_at)
        for job in own:
            log.info("recovery: taking back %s (%s)", job.id, job.status)
            self._adopt(job)
        adopted = len(own)
        while True:
            claimed = await self.claim_free()
            adopted += claimed
            if claimed < CLAIM_BATCH:
                return adopted

    async def keep(self) -> None:
        """Renew the leases of the jobs this instance runs, leaving those another instance
        holds now, until cancelled."""
        period = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self.renew()
            except Exception:  # the database may be briefly away: try again next period
                log.exception("recovery: renewing leases failed")

    async def renew(self) -> None:
        running = list(self._running())
        renewed = await self._store.renew_leases(self._owner, running, until=self.lease_expires_at)
        if renewed < len(running):
            lost = await self._store.held_elsewhere(self._owner, running)
            if lost:
                self._lose(lost)

    async def share(self) -> None:
        """Claim jobs whose lease is free or ran out, as many as there is room for, every
        ``claim_interval`` or when woken, until cancelled. After a claim that found nothing,
        wake-ups wait out a short pause and then share one claim."""
        pause = min(EMPTY_CLAIM_PAUSE, self._claim_interval)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._claim_interval):
                    await self._woken.wait()
            self._woken.clear()
            try:
                claimed = await self.claim_free()
            except Exception:  # the database may be briefly away: try again next period
                log.exception("recovery: claiming jobs failed")
                continue
            if not claimed:  # none waits now: the next moments' wake-ups share one claim
                await asyncio.sleep(pause)

    async def claim_free(self) -> int:
        """Claim and adopt free or expired jobs this instance has room for; how many."""
        room = min(self._room(), CLAIM_BATCH)
        if room <= 0:
            return 0
        running = list(self._running())
        claimed = await self._store.claim_free(
            self._owner, until=self.lease_expires_at, limit=room, exclude=running
        )
        for job in claimed:
            log.info("recovery: adopting %s (%s)", job.id, job.status)
            self._adopt(job)
        return len(claimed)
