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

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from imagegen.db.queries import rowcount, select_generations
from imagegen.db.tables import GenerationRow, to_generation
from imagegen.models import Generation, JobStatus

_UNFINISHED_VALUES = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
_RENEW_BATCH = 500  # ids per UPDATE when renewing leases


class SqlLeases:
    """Lease queries over the store's sessions; times from ``clock`` are timezone-aware.

    ``GenerationStore`` serves these methods as its own (``imagegen.jobs.protocols``).
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime]
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    async def list_unfinished(self) -> builtins.list[Generation]:
        """Queued and running jobs, oldest first: what a restart must resume or fail."""
        stmt = (
            select_generations()
            .where(GenerationRow.status.in_(_UNFINISHED_VALUES))
            .order_by(GenerationRow.created_at, GenerationRow.id)
        )
        async with self._sessions() as session:
            return [to_generation(row) for row in await session.scalars(stmt)]

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
            GenerationRow.lease_owner.is_(None),
            GenerationRow.lease_expires_at.is_(None),
            GenerationRow.lease_expires_at < now,
        ]
        if include_own:
            free.append(GenerationRow.lease_owner == owner)
        stmt = (
            sa.update(GenerationRow)
            .where(
                GenerationRow.id == generation_id,
                GenerationRow.status.in_(_UNFINISHED_VALUES),
                sa.or_(*free),
            )
            .values(lease_owner=owner, lease_expires_at=until)
        )
        async with self._sessions.begin() as session:
            return await rowcount(session, stmt) == 1

    async def renew_leases(
        self, owner: str, generation_ids: Sequence[str], *, until: datetime
    ) -> int:
        """Extend ``owner``'s leases on these unfinished jobs; how many were extended."""
        renewed = 0
        async with self._sessions.begin() as session:
            for start in range(0, len(generation_ids), _RENEW_BATCH):
                stmt = (
                    sa.update(GenerationRow)
                    .where(
                        GenerationRow.id.in_(list(generation_ids[start : start + _RENEW_BATCH])),
                        GenerationRow.lease_owner == owner,
                        GenerationRow.status.in_(_UNFINISHED_VALUES),
                    )
                    .values(lease_expires_at=until)
                )
                renewed += await rowcount(session, stmt)
        return renewed
