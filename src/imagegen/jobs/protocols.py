"""The seams the job runner depends on: the generation store, its webhook outbox, the ingestor."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from imagegen.jobs.records import Delivery, Outbox, WebhookAttempt
from imagegen.models import (
    Generation,
    GenerationRequest,
    PendingCreate,
    PredictionRecord,
    StoredImage,
)


@dataclass(frozen=True, slots=True)
class Idempotency:
    """An ``Idempotency-Key`` (as stored: scoped to its API key) and a digest of the request
    it was first used with; ``shown`` is the key as the client sent it."""

    key: str
    request_hash: str
    shown: str | None = None


class WebhookOutbox(Protocol):
    """Webhook messages waiting to be delivered, and the record of every attempt."""

    async def claim_due(self, *, limit: int, lease_seconds: float) -> list[Delivery]:
        """Due pending messages, each leased to the caller for ``lease_seconds``."""
        ...

    async def record(
        self,
        delivery_id: str,
        *,
        status_code: int | None,
        error: str | None,
        delivered: bool,
        retry_at: datetime | None,
    ) -> None:
        """Record an attempt; undelivered without ``retry_at`` means the message is given up."""
        ...

    async def next_due(self) -> datetime | None: ...

    async def attempts(
        self, generation_ids: Sequence[str]
    ) -> dict[str, builtins.list[WebhookAttempt]]: ...


class GenerationStore(Protocol):
    """Persistence of generation jobs (``imagegen.db.store`` implements it).

    Writes naming a ``holder`` apply only while that instance holds the job's lease and raise
    ``imagegen.errors.LeaseLost`` otherwise. Transitions raise
    ``imagegen.errors.InvalidTransition`` (carrying the job as it now is) when another writer
    changed the job first; ``outbox`` builds the webhook messages the transition owes, written
    in its transaction.
    """

    @property
    def outbox(self) -> WebhookOutbox: ...

    async def create(
        self,
        request: GenerationRequest,
        *,
        provider: str,
        deadline_at: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        webhook_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
        lease_owner: str | None = None,
        lease_expires_at: datetime | None = None,
        owner: str | None = None,
        started: bool = False,
        creates: Sequence[PendingCreate] = (),
    ) -> Generation:
        """Persist a queued job (``started``: a running one, as ``mark_running`` leaves it),
        with ``creates`` pending (as ``begin_create`` writes them) in the same transaction;
        raises ``IdempotencyKeyInUse`` if the key names another job."""
        ...

    async def release_idempotency_key(self, generation_id: str) -> None:
        """Forget the job's idempotency key (it expired), so the key can be used again."""
        ...

    async def mark_running(
        self, generation_id: str, *, outbox: Outbox | None = None, holder: str | None = None
    ) -> Generation: ...

    async def add_prediction(
        self, generation_id: str, record: PredictionRecord, *, holder: str | None = None
    ) -> bool:
        """Record a prediction the provider created, clearing the pending create it answers;
        True when this call recorded it new."""
        ...

    async def begin_create(
        self,
        generation_id: str,
        pending: PendingCreate,
        *,
        holder: str | None = None,
        until: datetime | None = None,
    ) -> None:
        """Record, before it is sent, that an upstream create is in flight (``holder``: only
        while it holds the job's lease, extended to ``until``; else ``LeaseLost``)."""
        ...

    async def pending_creates(self, generation_id: str) -> builtins.list[PendingCreate]:
        """The job's creates whose prediction was never recorded (a crash came first)."""
        ...

    async def adopt_prediction(
        self,
        generation_id: str,
        record: PredictionRecord,
        *,
        sole: bool = False,
        holder: str | None = None,
    ) -> bool:
        """Record a prediction found upstream as the job's; False if a job records it already
        (``sole``: or another job has a create with the same inputs in flight)."""
        ...

    async def mark_succeeded(
        self,
        generation_id: str,
        *,
        images: Sequence[StoredImage],
        provider_urls: Sequence[str],
        images_missing: int,
        outbox: Outbox | None = None,
        cost: float | None = None,
        predict_seconds: float | None = None,
        holder: str | None = None,
        predictions: Sequence[PredictionRecord] = (),
        request: GenerationRequest | None = None,
        recorded: Sequence[PredictionRecord] = (),
    ) -> Generation:
        """running -> succeeded; ``predictions`` not recorded yet are recorded first, in the
        same transaction (as ``add_prediction`` does). ``request``: the job's, in hand (it never
        changes once written), so the store need not read it back; nor the predictions, when
        ``recorded`` (recorded new earlier, in that order) and ``predictions`` are all of
        them."""
        ...

    async def mark_failed(
        self,
        generation_id: str,
        *,
        error: str,
        error_code: str,
        outbox: Outbox | None = None,
        cost: float | None = None,
        holder: str | None = None,
    ) -> Generation: ...

    async def mark_canceled(
        self,
        generation_id: str,
        *,
        reason: str,
        outbox: Outbox | None = None,
        holder: str | None = None,
    ) -> Generation: ...

    async def get(self, generation_id: str) -> Generation:
        """Raises ``imagegen.errors.NotFound`` for an unknown id."""
        ...

    async def list(
        self, *, limit: int, cursor: str | None, owner: str | None = None
    ) -> tuple[builtins.list[Generation], str | None]: ...

    async def list_unfinished(self) -> builtins.list[Generation]: ...

    async def claim(
        self, generation_id: str, *, owner: str, until: datetime, include_own: bool = True
    ) -> bool:
        """Lease an unfinished job to ``owner``: True when its lease was free, expired or
        (``include_own``) ``owner``'s already."""
        ...

    async def claim_free(
        self, owner: str, *, until: datetime, limit: int, exclude: Sequence[str] = ()
    ) -> builtins.list[Generation]:
        """Lease to ``owner`` up to ``limit`` unfinished jobs whose lease is free or ran out."""
        ...

    async def claim_own(self, owner: str, *, until: datetime) -> builtins.list[Generation]:
        """Extend ``owner``'s leases on its unfinished jobs, run out or not; those jobs."""
        ...

    async def waiting(self, provider: str, *, limit: int) -> int:
        """How many of ``provider``'s jobs wait unleased for room (counted up to ``limit``)."""
        ...

    async def held_elsewhere(self, owner: str, generation_ids: Sequence[str]) -> set[str]:
        """Which of these unfinished jobs another instance holds now."""
        ...

    async def renew_leases(
        self, owner: str, generation_ids: Sequence[str], *, until: datetime
    ) -> int:
        """Extend ``owner``'s leases on these jobs (the ones it is running)."""
        ...

    async def release_leases(self, owner: str, generation_ids: Sequence[str]) -> int:
        """Free ``owner``'s leases on these unfinished jobs (a graceful shutdown)."""
        ...

    async def find_by_idempotency_key(self, key: str) -> Generation | None: ...

    async def check(self) -> None: ...

    async def aclose(self) -> None: ...


class Ingestor(Protocol):
    """Downloads, verifies and stores one provider output (``imagegen.ingest`` implements it)."""

    async def ingest(self, url: str) -> StoredImage: ...
