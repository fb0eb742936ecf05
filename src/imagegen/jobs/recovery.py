"""Crash recovery: no job stays unfinished because the process running it died.

Each unfinished job is leased to the instance running it (``lease_owner`` = its instance id,
``lease_expires_at`` renewed every third of ``lease_seconds``). At start-up an instance claims
the unfinished jobs whose lease is its own (it was restarted, ``kill -9`` included), free, or run
out; while it runs, it renews the leases of the jobs it has a task for, and claims jobs whose
lease ran out (another replica died, or a task of its own ended without settling its job, say
while the database was away). The runner then, per job:

- past its deadline: cancels its predictions upstream and marks it failed (504's error);
- ``running`` with stored predictions or pending creates (a create is recorded, with its exact
  inputs, before it is sent): ``Provider.resume`` polls the predictions, and for each create
  whose reply never came adopts the prediction it started, found upstream, creating it only
  when there is none; nothing is paid for twice;
- ``queued``, or ``running`` with neither (the crash came before any create was sent): runs it
  as if just submitted.

A graceful shutdown (``JobRunner.aclose``) cancels nothing upstream and releases the leases of
the jobs it stops, so a restart or another replica takes them up at once.

A job whose lease is still another live instance's is left alone; claims are conditional
UPDATEs, so two instances never both adopt one job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from imagegen.jobs.protocols import GenerationStore
from imagegen.models import Generation

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
    ) -> None:
        self._store = store
        self._owner = owner
        self._lease = timedelta(seconds=lease_seconds)
        self._clock = clock
        self._adopt = adopt
        self._running = running

    @property
    def lease_expires_at(self) -> datetime:
        return self._clock() + self._lease

    async def at_start(self) -> int:
        """Claim and adopt this instance's unfinished jobs and any orphans; how many."""
        return await self._claim_unfinished(include_own=True)

    async def keep(self) -> None:
        """Renew the leases of the jobs this instance runs and adopt jobs whose lease ran out
        (another instance's, or one of ours whose task died), until cancelled."""
        period = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(period)
            try:
                running = list(self._running())
                await self._store.renew_leases(self._owner, running, until=self.lease_expires_at)
                await self._claim_unfinished(include_own=False)
            except Exception:  # the database may be briefly away: try again next period
                log.exception("recovery: renewing leases failed")

    async def _claim_unfinished(self, *, include_own: bool) -> int:
        adopted = 0
        for job in await self._store.list_unfinished():
            if job.id in self._running():
                continue
            claimed = await self._store.claim(
                job.id, owner=self._owner, until=self.lease_expires_at, include_own=include_own
            )
            if claimed:
                log.info("recovery: adopting %s (%s)", job.id, job.status)
                self._adopt(job)
                adopted += 1
        return adopted
