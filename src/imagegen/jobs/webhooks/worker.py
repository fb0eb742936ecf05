"""The outbox worker: claims due messages, sends each (a few at a time), records every attempt,
and schedules the next one with exponential backoff until it is delivered or too old.

It runs beside the jobs, never in their path: a transition only writes an outbox row and wakes
the worker, so a receiver that is slow or down costs a generation nothing. Messages live in the
database, so a restart resumes their retries where they stood.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from imagegen.jobs.protocols import WebhookOutbox
from imagegen.jobs.records import Delivery
from imagegen.jobs.webhooks.client import AttemptResult, WebhookSender

log = logging.getLogger(__name__)

DEFAULT_DELAYS = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0)


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Seconds to wait after the 1st, 2nd, ... failed attempt (±``jitter``), for at most
    ``max_age`` seconds after the message was written. The default spans about 16 hours."""

    delays: tuple[float, ...] = DEFAULT_DELAYS
    max_age: float = 86400.0
    jitter: float = 0.1

    def retry_at(
        self, delivery: Delivery, now: datetime, draw: Callable[[], float]
    ) -> datetime | None:
        """When to try again after a failed attempt; None to give up."""
        failed = delivery.attempts + 1
        if failed > len(self.delays):
            return None
        delay = self.delays[failed - 1] * (1 + self.jitter * (2 * draw() - 1))
        when = now + timedelta(seconds=delay)
        if when > delivery.created_at + timedelta(seconds=self.max_age):
            return None
        return when


class WebhookWorker:
    """Delivers the outbox. ``run`` loops until cancelled; ``deliver_due`` is one pass."""

    def __init__(
        self,
        outbox: WebhookOutbox,
        sender: WebhookSender,
        schedule: RetrySchedule,
        *,
        clock: Callable[[], datetime],
        concurrency: int = 16,
        lease_seconds: float = 60.0,
        idle_seconds: float = 5.0,
        draw: Callable[[], float] = random.random,
        on_attempt: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self._outbox = outbox
        self._sender = sender
        self._schedule = schedule
        self._clock = clock
        self._concurrency = concurrency
        self._lease = lease_seconds
        self._idle = idle_seconds
        self._draw = draw
        self._on_attempt = on_attempt  # "delivered", "failed" (retried later) or "given_up"
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """A message was written: look for due work now rather than at the next idle tick."""
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                sent = await self.deliver_due()
            except Exception:  # the database may be briefly away: keep the worker alive
                log.exception("webhooks: delivering the outbox failed; retrying shortly")
                sent = 0
            if not sent:
                await self._pause()

    async def deliver_due(self) -> int:
        """Claim due messages and send them, ``concurrency`` at a time; how many were tried."""
        claimed = await self._outbox.claim_due(
            limit=self._concurrency * 4, lease_seconds=self._lease
        )
        gate = asyncio.Semaphore(self._concurrency)

        async def one(delivery: Delivery) -> None:
            async with gate:
                await self._deliver(delivery)

        await asyncio.gather(*(one(delivery) for delivery in claimed))
        return len(claimed)

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            result = await self._sender.send(delivery)
        except Exception as exc:  # a bug must not wedge the message: record it and retry
            log.exception("webhooks: sending %s failed unexpectedly", delivery.id)
            result = AttemptResult(None, f"internal error: {type(exc).__name__}", False)
        retry_at = None
        if not result.delivered and not result.permanent:
            retry_at = self._schedule.retry_at(delivery, self._clock(), self._draw)
        if not result.delivered:
            log.info(
                "webhooks: %s (%s of %s) failed: %s; %s",
                delivery.id,
                delivery.event,
                delivery.generation_id,
                result.error,
                f"retrying at {retry_at:%H:%M:%S}" if retry_at else "giving up",
            )
        self._on_attempt("delivered" if result.delivered else "failed" if retry_at else "given_up")
        await self._outbox.record(
            delivery.id,
            status_code=result.status_code,
            error=result.error,
            delivered=result.delivered,
            retry_at=retry_at,
        )

    async def _pause(self) -> None:
        timeout = self._idle
        with contextlib.suppress(Exception):
            due = await self._outbox.next_due()
            if due is not None:
                timeout = min(timeout, max(0.0, (due - self._clock()).total_seconds()))
        timeout = max(0.05, timeout)  # a message another replica holds must not make us spin
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        self._wakeup.clear()
