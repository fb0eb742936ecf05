"""Values the job machinery persists besides the generation itself: webhook deliveries (the
outbox) and their attempts. Frozen dataclasses, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from imagegen.models import Generation


class WebhookEvent(enum.StrEnum):
    """What a webhook reports: the job started running, or it ended (any terminal state)."""

    START = "start"
    COMPLETED = "completed"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up: retries exhausted, too old, or refused for good


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where a job's webhooks go, and which events it wants."""

    url: str
    events: tuple[WebhookEvent, ...] = (WebhookEvent.COMPLETED,)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A webhook message to send; ``id`` is its ``webhook-id`` (the same on every retry)."""

    id: str
    generation_id: str
    event: WebhookEvent
    url: str
    body: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message in the outbox, as the worker claims it."""

    id: str
    generation_id: str
    event: WebhookEvent
    url: str
    body: str
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    """One try at delivering a message: the receiver's status, or why there was none."""

    delivery_id: str
    event: WebhookEvent
    attempted_at: datetime
    status_code: int | None
    error: str | None
    delivered: bool


Outbox = Callable[[Generation], Sequence[NewDelivery]]
"""Builds the deliveries a transition owes, from the job as the transition left it; the store
writes them in the transition's own transaction, so no state change loses its webhook."""
