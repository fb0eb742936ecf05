"""Job leases in SQL, for crash recovery across replicas (``imagegen.jobs.recovery``).

An unfinished job carries a lease (``lease_owner``, ``lease_expires_at``): the instance running
it renews the lease, and recovery claims only jobs whose lease is its own or has run out. A claim
is one conditional UPDATE, so of several replicas claiming an orphan at once exactly one wins.
Finished jobs are never claimed or renewed.

Leases fence: every write of the instance running a job (its transitions, predictions and
pending creates) is conditional on ``lease_owner`` still naming it, checked in the same
transaction (``fence``). An instance that stalled past its lease while another adopted the job
gets ``LeaseLost`` from its next write, having written nothing; since a create is sent only
after its pending create is written this way, a replica whose lease was taken over cannot
create. Instance names must be unique among live instances (``Settings.instance_id``).

``claim_free`` is how work is shared: every instance takes the oldest unfinished jobs whose lease
is free or ran out, as many as it has room for, in one transaction (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so replicas claiming at once skip each other's rows instead of waiting on them).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa

from imagegen.db.compiled import Fixed
from imagegen.db.database import Database
from imagegen.db.queries import (
    load_generations,
    not_found,
    one_of,
    rowcount,
    with_predictions_and_images,
)
from imagegen.db.tables import GENERATIONS
from imagegen.errors import LeaseLost
from imagegen.models import Generation, JobStatus

_UNFINISHED_VALUES = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]
_RENEW_BATCH = 500  # ids per UPDATE when renewing leases
_UNFINISHED = (
    sa.select(GENERATIONS)
    .where(one_of(GENERATIONS.c.status, _UNFINISHED_VALUES))
    .order_by(GENERATIONS.c.created_at, GENERATIONS.c.id)
)


# The oldest unfinished jobs whose lease is free or ran out, up to ``:room`` of them, none of
# ``:exclude``, leased to ``:claimer``; on PostgreSQL FOR UPDATE SKIP LOCKED, so replicas claiming
# at once skip each other's rows instead of waiting on them. Parameters are never named like a
# column (``owner`` is one): SQLAlchemy would add them to the SET clause.
_CLAIM_FREE = (
    sa.update(GENERATIONS)
    .where(
        GENERATIONS.c.id.in_(
            sa.select(GENERATIONS.c.id)
            .where(
                one_of(GENERATIONS.c.status, _UNFINISHED_VALUES),
                sa.or_(
                    GENERATIONS.c.lease_owner.is_(None),
                    GENERATIONS.c.lease_expires_at.is_(None),
                    GENERATIONS.c.lease_expires_at < sa.bindparam("now"),
                ),
                GENERATIONS.c.id.not_in(sa.bindparam("exclude", expanding=True)),
            )
            .order_by(GENERATIONS.c.created_at, GENERATIONS.c.id)
            .limit(sa.bindparam("room", type_=sa.Integer))
            .with_for_update(skip_locked=True)
        )
    )
    .values(
        lease_owner=sa.bindparam("claimer"),
        lease_expires_at=sa.bindparam("until", type_=GENERATIONS.c.lease_expires_at.type),
    )
    .returning(*GENERATIONS.c)
)
_OWNER_OF = Fixed(
    sa.select(GENERATIONS.c.lease_owner).where(GENERATIONS.c.id == sa.bindparam("generation_id"))
)
# Built once: the SET clause (``lease_owner``, and ``lease_expires_at`` when extended) comes from
# the parameters of each execution, so SQLAlchemy's compiled cache serves both forms.
_FENCE = Fixed(
    sa.update(GENERATIONS).where(
        GENERATIONS.c.id == sa.bindparam("generation_id"),
        GENERATIONS.c.lease_owner == sa.bindparam("holder"),
    )
)


def fence(
    connection: sa.Connection, generation_id: str, holder: str, until: datetime | None = None
) -> None:
    """Inside a write transaction: go on only while ``holder`` holds the job's lease (the row
    stays locked to the transaction's end, so no claim slips in between). ``until``: extend the
    lease to then. Raises ``LeaseLost``, or ``NotFound`` when there is no such job.

    On SQLite the write transaction holds the file's write lock from its BEGIN IMMEDIATE: no
    claim can slip in, so reading the lease is fence enough, and writes no page."""
    if until is None and connection.dialect.name == "sqlite":
        found = _OWNER_OF.first(connection, {"generation_id": generation_id})
        if found is None:
            raise not_found(generation_id)
        if found["lease_owner"] != holder:
            raise LeaseLost(generation_id)
        return
    parameters: dict[str, object] = {
        "generation_id": generation_id,
        "holder": holder,
        "lease_owner": holder,  # unchanged: the UPDATE is there to lock the row
    }
    if until is not None:
        parameters["lease_expires_at"] = until
    if _FENCE.rowcount(connection, parameters) == 1:
        return
    raise fence_refused(connection, generation_id)


def fenced_cte(*, extend: bool = False) -> sa.CTE:
    """``fence`` as a CTE, for PostgreSQL to run in the same statement as the write it guards
    (one round trip, no transaction around it): the UPDATE locks the job's row until the
    statement commits, and returns its id only while ``:holder`` holds the lease (``extend``:
    extended to ``:until``). The write selects from it, so it writes nothing when the lease is
    lost; then ``fence_refused`` says why."""
    values: dict[str, object] = {"lease_owner": sa.bindparam("holder")}
    if extend:
        values["lease_expires_at"] = sa.bindparam(
            "until", type_=GENERATIONS.c.lease_expires_at.type
        )
    return (
        sa.update(GENERATIONS)
        .where(
            GENERATIONS.c.id == sa.bindparam("generation_id"),
            GENERATIONS.c.lease_owner == sa.bindparam("holder"),
        )
        .values(values)
        .returning(GENERATIONS.c.id)
        .cte("fenced")
    )


def fence_refused(connection: sa.Connection, generation_id: str) -> Exception:
    """Why a fenced write found no job leased to its holder: ``NotFound`` or ``LeaseLost``."""
    if _OWNER_OF.first(connection, {"generation_id": generation_id}) is None:
        return not_found(generation_id)
    return LeaseLost(generation_id)


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
                one_of(GENERATIONS.c.status, _UNFINISHED_VALUES),
                sa.or_(*free),
            )
            .values(lease_owner=owner, lease_expires_at=until)
        )
        return await self._db.write(partial(rowcount, stmt=stmt)) == 1

    async def claim_free(
        self, owner: str, *, until: datetime, limit: int, exclude: Sequence[str] = ()
    ) -> builtins.list[Generation]:
        """Lease to ``owner`` up to ``limit`` unfinished jobs, oldest first, whose lease is free
        or ran out (none of ``exclude``); the jobs it now holds."""
        if limit <= 0:
            return []
        parameters = {
            "claimer": owner,
            "until": until,
            "now": self._clock(),
            "room": limit,
            "exclude": list(exclude),
        }

        def take(connection: sa.Connection) -> builtins.list[Generation]:
            claimed = connection.execute(_CLAIM_FREE, parameters).mappings()
            jobs = with_predictions_and_images(connection, claimed)
            return sorted(jobs, key=lambda job: (job.created_at, job.id))

        # One statement: the claim locks the rows it takes (skipping rows another claim holds)
        # and leases them; what follows only reads.
        return await self._db.write(take, one_statement=True)

    async def claim_own(self, owner: str, *, until: datetime) -> builtins.list[Generation]:
        """Extend to ``until`` the leases ``owner`` holds on unfinished jobs, whether or not they
        ran out (a restarted instance taking its jobs back); those jobs, oldest first."""
        stmt = (
            sa.update(GENERATIONS)
            .where(
                GENERATIONS.c.lease_owner == owner,
                one_of(GENERATIONS.c.status, _UNFINISHED_VALUES),
            )
            .values(lease_expires_at=until)
            .returning(GENERATIONS.c.id)
        )

        def take(connection: sa.Connection) -> builtins.list[Generation]:
            ids = [row.id for row in connection.execute(stmt)]
            if not ids:
                return []
            return load_generations(connection, _UNFINISHED.where(GENERATIONS.c.id.in_(ids)))

        return await self._db.write(take)

    async def waiting(self, provider: str, *, limit: int) -> int:
        """How many of ``provider``'s jobs wait unleased for an instance with room (counted up
        to ``limit``)."""
        waiting = (
            sa.select(GENERATIONS.c.id)
            .where(
                GENERATIONS.c.status == JobStatus.QUEUED.value,
                GENERATIONS.c.lease_owner.is_(None),
                GENERATIONS.c.provider == provider,
            )
            .limit(limit)
            .subquery()
        )
        stmt = sa.select(sa.func.count()).select_from(waiting)
        return int(await self._db.read(lambda connection: connection.execute(stmt).scalar_one()))

    async def held_elsewhere(self, owner: str, generation_ids: Sequence[str]) -> set[str]:
        """Which of these unfinished jobs another instance holds now (``owner`` lost them)."""
        ids = list(generation_ids)

        def lost(connection: sa.Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(ids), _RENEW_BATCH):
                stmt = sa.select(GENERATIONS.c.id).where(
                    GENERATIONS.c.id.in_(ids[start : start + _RENEW_BATCH]),
                    one_of(GENERATIONS.c.status, _UNFINISHED_VALUES),
                    GENERATIONS.c.lease_owner.is_not(None),
                    GENERATIONS.c.lease_owner != owner,
                )
                found.update(row.id for row in connection.execute(stmt))
            return found

        return await self._db.read(lost)

    async def renew_leases(
        self, owner: str, generation_ids: Sequence[str], *, until: datetime
    ) -> int:
        """Extend ``owner``'s leases on these unfinished jobs; how many were extended."""
        return await self._update_leases(owner, generation_ids, lease_expires_at=until)

    async def release_leases(self, owner: str, generation_ids: Sequence[str]) -> int:
        """Hand ``owner``'s unfinished jobs back (a graceful shutdown): their leases are freed,
        so a restart or another replica takes them up at once. How many were released."""
        return await self._update_leases(
            owner, generation_ids, lease_owner=None, lease_expires_at=None
        )

    async def _update_leases(self, owner: str, generation_ids: Sequence[str], **values: Any) -> int:
        """Set ``values`` on ``owner``'s unfinished jobs among these, in batches; how many."""
        ids = list(generation_ids)

        def update(connection: sa.Connection) -> int:
            updated = 0
            for start in range(0, len(ids), _RENEW_BATCH):
                stmt = (
                    sa.update(GENERATIONS)
                    .where(
                        GENERATIONS.c.id.in_(ids[start : start + _RENEW_BATCH]),
                        GENERATIONS.c.lease_owner == owner,
                        one_of(GENERATIONS.c.status, _UNFINISHED_VALUES),
                    )
                    .values(**values)
                )
                updated += rowcount(connection, stmt)
            return updated

        return await self._db.write(update)
