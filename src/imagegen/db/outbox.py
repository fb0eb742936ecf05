"""The webhook outbox in SQL: messages written with the state change that owes them, claimed by
a delivery worker, and every attempt recorded.

A worker claims a due message by moving its ``next_attempt_at`` forward by a lease, in one
conditional UPDATE: two workers (two replicas) never send the same attempt, and a worker that
dies mid-attempt leaves the message due again once the lease runs out.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from imagegen.db.database import Database
from imagegen.db.queries import rowcount
from imagegen.db.rows import to_attempt, to_delivery
from imagegen.db.tables import ATTEMPTS, DELIVERIES
from imagegen.jobs.records import Delivery, DeliveryStatus, WebhookAttempt

_PENDING = DeliveryStatus.PENDING.value


class SqlWebhookOutbox:
    """Outbox queries over the store's database; times from ``clock`` are timezone-aware."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime]) -> None:
        self._db = db
        self._clock = clock

    async def claim_due(self, *, limit: int, lease_seconds: float) -> list[Delivery]:
        """Up to ``limit`` pending messages that are due, oldest due first, each now leased to
        the caller for ``lease_seconds``."""
        now = self._clock()
        until = now + timedelta(seconds=lease_seconds)
        due = (
            sa.select(DELIVERIES.c.id, DELIVERIES.c.next_attempt_at)
            .where(DELIVERIES.c.status == _PENDING, DELIVERIES.c.next_attempt_at <= now)
            .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.id)
            .limit(limit)
        )

        def claim(connection: sa.Connection) -> list[Delivery]:
            claimed: list[str] = []
            for delivery_id, seen in connection.execute(due).all():
                stmt = (
                    sa.update(DELIVERIES)
                    .where(
                        DELIVERIES.c.id == delivery_id,
                        DELIVERIES.c.status == _PENDING,
                        DELIVERIES.c.next_attempt_at == seen,
                    )
                    .values(next_attempt_at=until, updated_at=now)
                )
                if rowcount(connection, stmt) == 1:
                    claimed.append(delivery_id)
            if not claimed:
                return []
            rows = connection.execute(
                sa.select(DELIVERIES)
                .where(DELIVERIES.c.id.in_(claimed))
                .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.id)
            )
            return [to_delivery(row) for row in rows.mappings()]

        return await self._db.write(claim)

    async def record(
        self,
        delivery_id: str,
        *,
        status_code: int | None,
        error: str | None,
        delivered: bool,
        retry_at: datetime | None,
    ) -> None:
        """Record one attempt. Not delivered and no ``retry_at``: the message is given up."""
        now = self._clock()
        changes: dict[str, Any]
        if delivered:
            status, changes = DeliveryStatus.DELIVERED, {"delivered_at": now}
        elif retry_at is not None:
            status, changes = DeliveryStatus.PENDING, {"next_attempt_at": retry_at}
        else:
            status, changes = DeliveryStatus.FAILED, {}
        update = (
            sa.update(DELIVERIES)
            .where(DELIVERIES.c.id == delivery_id)
            .values(
                status=status.value,
                attempts=DELIVERIES.c.attempts + 1,
                updated_at=now,
                **changes,
            )
        )
        attempt = sa.insert(ATTEMPTS).values(
            delivery_id=delivery_id,
            attempted_at=now,
            status_code=status_code,
            error=error,
            delivered=delivered,
        )

        def write(connection: sa.Connection) -> None:
            connection.execute(update)
            connection.execute(attempt)

        await self._db.write(write)

    async def next_due(self) -> datetime | None:
        """When the soonest pending message is due; None when nothing is pending."""
        stmt = sa.select(sa.func.min(DELIVERIES.c.next_attempt_at)).where(
            DELIVERIES.c.status == _PENDING
        )
        return await self._db.read(lambda connection: connection.scalar(stmt))

    async def attempts(
        self, generation_ids: Sequence[str]
    ) -> dict[str, builtins.list[WebhookAttempt]]:
        """Every delivery attempt of each job, oldest first (jobs without any are absent)."""
        if not generation_ids:
            return {}
        stmt = (
            sa.select(ATTEMPTS, DELIVERIES.c.generation_id, DELIVERIES.c.event)
            .join(DELIVERIES, ATTEMPTS.c.delivery_id == DELIVERIES.c.id)
            .where(DELIVERIES.c.generation_id.in_(list(generation_ids)))
            .order_by(ATTEMPTS.c.attempted_at, ATTEMPTS.c.id)
        )

        def read(connection: sa.Connection) -> dict[str, builtins.list[WebhookAttempt]]:
            found: dict[str, builtins.list[WebhookAttempt]] = {}
            for row in connection.execute(stmt).mappings():
                attempt = to_attempt(row, row["event"])
                found.setdefault(row["generation_id"], []).append(attempt)
            return found

        return await self._db.read(read)

    async def deliveries(self, generation_id: str) -> builtins.list[tuple[Delivery, str]]:
        """A job's messages with their status (``pending``, ``delivered``, ``failed``)."""
        stmt = (
            sa.select(DELIVERIES)
            .where(DELIVERIES.c.generation_id == generation_id)
            .order_by(DELIVERIES.c.created_at, DELIVERIES.c.id)
        )

        def read(connection: sa.Connection) -> builtins.list[tuple[Delivery, str]]:
            rows = connection.execute(stmt).mappings()
            return [(to_delivery(row), row["status"]) for row in rows]

        return await self._db.read(read)
