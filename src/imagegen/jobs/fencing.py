"""Lease fencing for the jobs this instance runs: no write and no upstream create once another
instance has adopted a job.

Every write of a running job names this instance as the lease's holder (``db/leases.py``
checks it in the same transaction), so the first write after an adoption raises ``LeaseLost``.
The job is then *lost*: its provider is told it is handing back (``handing_back``), so it
cancels nothing upstream, and the task stops; the adopter resumes the stored predictions.

A create is sent only after its pending create was written under the lease, which also extends
the lease (``begin_create``), or with the job itself, which wrote the lease. The adopter cannot
claim the job before that lease runs out, and then looks upstream for the create's prediction
before creating it again. So a create must leave well before the lease it wrote runs out: if
more than ``SEND_WITHIN`` of the lease has passed since the fenced write began (a stalled event
loop, a long GC, a slow database), the lease is written again before sending, and a lease taken
over meanwhile stops the create.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar

from imagegen.errors import LeaseLost
from imagegen.jobs.protocols import GenerationStore
from imagegen.models import PendingCreate

log = logging.getLogger(__name__)

SEND_WITHIN = 0.5  # of the lease: how old the fenced write before a create may be when it is sent

P = ParamSpec("P")
T = TypeVar("T")


class LeaseFence:
    def __init__(
        self,
        store: GenerationStore,
        *,
        holder: str,
        lease_seconds: float,
        clock: Callable[[], datetime],
        loop_time: Callable[[], float] | None = None,
    ) -> None:
        self._store = store
        self.holder = holder
        self._lease = timedelta(seconds=lease_seconds)
        self._clock = clock
        self._loop_time = loop_time or (lambda: asyncio.get_running_loop().time())
        self.lost: set[str] = set()

    def lose(self, generation_id: str) -> None:
        if generation_id not in self.lost:
            log.warning("generation %s: another instance holds it now; leaving it", generation_id)
        self.lost.add(generation_id)

    def guard(
        self, generation_id: str, write: Callable[P, Awaitable[T]]
    ) -> Callable[P, Awaitable[T]]:
        """``write``, marking the job lost when it raises ``LeaseLost``."""

        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await write(*args, **kwargs)
            except LeaseLost:
                self.lose(generation_id)
                raise

        return guarded

    def begin_create(
        self,
        generation_id: str,
        written: Sequence[PendingCreate] = (),
        written_at: float | None = None,
    ) -> Callable[[PendingCreate], Awaitable[None]]:
        """The ``on_create`` of a job: write the pending create under the lease, and return
        only while that write is recent enough for the create to go out.

        ``written``: creates recorded with the job itself, whose write (begun at
        ``written_at``, on the loop's clock) also wrote its lease. Each is announced once
        without another write, under the same rule: that write recent enough."""
        unsent = list(written)

        async def begin(pending: PendingCreate) -> None:
            started = self._loop_time()
            if written_at is not None and pending in unsent:  # equal model, inputs, images
                unsent.remove(pending)
                started = written_at
            else:
                await self._store.begin_create(
                    generation_id, pending, holder=self.holder, until=self._clock() + self._lease
                )
            budget = self._lease.total_seconds() * SEND_WITHIN
            while self._loop_time() - started > budget:  # stalled: is the lease still ours?
                started = self._loop_time()
                held = await self._store.renew_leases(
                    self.holder, [generation_id], until=self._clock() + self._lease
                )
                if not held:
                    raise LeaseLost(generation_id)

        return self.guard(generation_id, begin)
