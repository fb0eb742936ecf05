"""Job leases in SQL, for crash recovery across replicas (``imagegen.jobs.recovery``).

An unfinished job carries a lease (``lease_owner``, ``lease_expires_at``): the instance running
it renews the lease, and recovery claims only jobs whose lease is its own or has run out. A claim
is one conditional UPDATE, so of several replicas claiming an orphan at once exactly one wins.
Finished jobs are never claimed or renewed.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial

import sqlalchemy as sa

from imagegen.db.database import Database
from imagegen.db.queries import load_generations, rowcount
from imagegen.db.tables import GENERATIONS
from imagegen.models import Generation, JobStatus

_UNFINISHED_VALUES = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
_RENEW_BATCH = 500  # ids per UPDATE when renewing leases
_UNFINISHED = (
    sa.select(GENERATIONS)
    .where(GENERATIONS.c.status.in_(_UNFINISHED_VALUES))
    .order_by(GENERATIONS.c.created_at, GENERATIONS.c.id)
)


class SqlLeases:
    """Lease queries over the store's database; times from ``clock`` are timezone-aware.

    ``GenerationStore`` serves these methods as its own (``imagegen.jobs.protocols``).
    """

    def __init__(self, db: Database, *, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def list_unfinished(self) -> builtins.list[Generation]:
        """Queued and running jobs, oldest first: what a restart must resume or fail."""
        return await self._db.read(partial(load_generations, stmt=_UNFINISHED))

    async def claim(
        self, generation_id: str, *, owner: str, until: datetime, include_own: bool = True
    ) -> bool:
        """Lease an unfinished job to ``owner`` until ``until``; True when it is now ``owner``'s.

        It succeeds when the job has no lease, its lease ran out, or (``include_own``: a
        restarted instance taking its jobs back) ``owner`` holds it already. Exactly one of
        several replicas claiming an orphan at once gets True.
        """
        now = self._clock()
        free = [
            GENERATIONS.c.lease_owner.is_(None),
            GENERATIONS.c.lease_expires_at.is_(None),
            GENERATIONS.c.lease_expires_at < now,
        ]
        if include_own:
            free.append(GENERATIONS.c.lease_owner == owner)
        stmt = (
            sa.update(GENERATIONS)
            .where(
                GENERATIONS.c.id == generation_id,
                GENERATIONS.c.status.in_(_UNFINISHED_VALUES),
                sa.or_(*free),
            )
            .values(lease_owner=owner, lease_expires_at=until)
        )
        return await self._db.write(partial(rowcount, stmt=stmt)) == 1

    async def renew_leases(
        self, owner: str, generation_ids: Sequence[str], *, until: datetime
    ) -> int:
        """Extend ``owner``'s leases on these unfinished jobs; how many were extended."""
        ids = list(generation_ids)

        def renew(connection: sa.Connection) -> int:
            renewed = 0
            for start in range(0, len(ids), _RENEW_BATCH):
                stmt = (
                    sa.update(GENERATIONS)
                    .where(
                        GENERATIONS.c.id.in_(ids[start : start + _RENEW_BATCH]),
                        GENERATIONS.c.lease_owner == owner,
                        GENERATIONS.c.status.in_(_UNFINISHED_VALUES),
                    )
                    .values(lease_expires_at=until)
                )
                renewed += rowcount(connection, stmt)
            return renewed

        return await self._db.write(renew)

    async def release_leases(self, owner: str, generation_ids: Sequence[str]) -> int:
        """Hand ``owner``'s unfinished jobs back (a graceful shutdown): their leases are freed,
        so a restart or another replica takes them up at once. How many were released."""
        ids = list(generation_ids)

        def release(connection: sa.Connection) -> int:
            released = 0
            for start in range(0, len(ids), _RENEW_BATCH):
                stmt = (
                    sa.update(GENERATIONS)
                    .where(
                        GENERATIONS.c.id.in_(ids[start : start + _RENEW_BATCH]),
                        GENERATIONS.c.lease_owner == owner,
                        GENERATIONS.c.status.in_(_UNFINISHED_VALUES),
                    )
                    .values(lease_owner=None, lease_expires_at=None)
                )
                released += rowcount(connection, stmt)
            return released

        return await self._db.write(release)
