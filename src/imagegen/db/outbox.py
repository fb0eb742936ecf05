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

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from imagegen.db.tables import WebhookAttemptRow, WebhookDeliveryRow, to_attempt, to_delivery
from imagegen.jobs.records import Delivery, DeliveryStatus, WebhookAttempt

_PENDING = DeliveryStatus.PENDING.value


class SqlWebhookOutbox:
    """Outbox queries over the store's sessions; times from ``clock`` are timezone-aware."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, clock: Callable[[], datetime]
    ) -> None:
        self._sessions = sessions
        self._clock = clock

    async def claim_due(self, *, limit: int, lease_seconds: float) -> list[Delivery]:
        """Up to ``limit`` pending messages that are due, oldest due first, each now leased to
        the caller for ``lease_seconds``."""
        now = self._clock()
        until = now + timedelta(seconds=lease_seconds)
        due = (
            sa.select(WebhookDeliveryRow.id, WebhookDeliveryRow.next_attempt_at)
            .where(WebhookDeliveryRow.status == _PENDING, WebhookDeliveryRow.next_attempt_at <= now)
            .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
            .limit(limit)
        )
        claimed: list[str] = []
        async with self._sessions.begin() as session:
            for delivery_id, seen in (await session.execute(due)).all():
                stmt = (
                    sa.update(WebhookDeliveryRow)
                    .where(
                        WebhookDeliveryRow.id == delivery_id,
                        WebhookDeliveryRow.status == _PENDING,
                        WebhookDeliveryRow.next_attempt_at == seen,
                    )
                    .values(next_attempt_at=until, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
                if (await session.execute(stmt)).rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(delivery_id)
            if not claimed:
                return []
            rows = await session.scalars(
                sa.select(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.id.in_(claimed))
                .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
            )
            return [to_delivery(row) for row in rows]

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
        if delivered:
            status, changes = DeliveryStatus.DELIVERED, {"delivered_at": now}
        elif retry_at is not None:
            status, changes = DeliveryStatus.PENDING, {"next_attempt_at": retry_at}
        else:
            status, changes = DeliveryStatus.FAILED, {}
        stmt = (
            sa.update(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.id == delivery_id)
            .values(
                status=status.value,
                attempts=WebhookDeliveryRow.attempts + 1,
                updated_at=now,
                **changes,
            )
        )
        async with self._sessions.begin() as session:
            await session.execute(stmt)
            session.add(
                WebhookAttemptRow(
                    delivery_id=delivery_id,
                    attempted_at=now,
                    status_code=status_code,
                    error=error,
                    delivered=delivered,
                )
            )

    async def next_due(self) -> datetime | None:
        """When the soonest pending message is due; None when nothing is pending."""
        stmt = sa.select(sa.func.min(WebhookDeliveryRow.next_attempt_at)).where(
            WebhookDeliveryRow.status == _PENDING
        )
        async with self._sessions() as session:
            return await session.scalar(stmt)

    async def attempts(
        self, generation_ids: Sequence[str]
    ) -> dict[str, builtins.list[WebhookAttempt]]:
        """Every delivery attempt of each job, oldest first (jobs without any are absent)."""
        if not generation_ids:
            return {}
        stmt = (
            sa.select(WebhookAttemptRow, WebhookDeliveryRow.generation_id, WebhookDeliveryRow.event)
            .join(WebhookDeliveryRow, WebhookAttemptRow.delivery_id == WebhookDeliveryRow.id)
            .where(WebhookDeliveryRow.generation_id.in_(list(generation_ids)))
            .order_by(WebhookAttemptRow.attempted_at, WebhookAttemptRow.id)
        )
        found: dict[str, builtins.list[WebhookAttempt]] = {}
        async with self._sessions() as session:
            for row, generation_id, event in (await session.execute(stmt)).all():
                found.setdefault(generation_id, []).append(to_attempt(row, event))
        return found

    async def deliveries(self, generation_id: str) -> builtins.list[tuple[Delivery, str]]:
        """A job's messages with their status (``pending``, ``delivered``, ``failed``)."""
        stmt = (
            sa.select(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.generation_id == generation_id)
            .order_by(WebhookDeliveryRow.created_at, WebhookDeliveryRow.id)
        )
        async with self._sessions() as session:
            return [(to_delivery(row), row.status) for row in await session.scalars(stmt)]
