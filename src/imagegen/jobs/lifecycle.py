"""Every state change of a job, in one place: the guarded store transition, the webhook messages
it owes (written in the same transaction), and the event its listeners hear.

A transition another writer beat (a cancel racing completion, two replicas recovering one job)
raises ``InvalidTransition`` carrying the job as that writer left it; listeners hear that state.
Transitions of the instance running the job are fenced by its lease (``holder``): one another
instance adopted raises ``LeaseLost`` and changes nothing. A cancel asked of an instance that
does not run the job (``fenced=False``) is the user's, and applies whoever holds the lease.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from imagegen.errors import InvalidTransition
from imagegen.jobs.events import JobEvents
from imagegen.jobs.protocols import GenerationStore
from imagegen.jobs.records import WebhookEvent
from imagegen.jobs.webhooks.messages import WebhookMessages, asks_for, event_of
from imagegen.models import Generation, GenerationRequest, PredictionRecord, StoredImage

log = logging.getLogger("imagegen.generations")


class Transitions:
    def __init__(
        self,
        store: GenerationStore,
        events: JobEvents,
        messages: WebhookMessages,
        *,
        wake_webhooks: Callable[[], None] = lambda: None,
        holder: str | None = None,
    ) -> None:
        self._store = store
        self._holder = holder
        self._events = events
        self._outbox = messages.outbox()
        self._wake = wake_webhooks

    def created(self, generation: Generation) -> None:
        """A job was written (``queued``, or ``running`` when it had a slot at once): log it
        like every later state."""
        _log_state(generation)

    def started(self, generation: Generation) -> None:
        """A job written ``running`` (``created``) starts its work: its listeners hear it then,
        as they hear a queued job's start; nothing is written (it was logged when written)."""
        self._events.state(generation)

    async def running(self, generation: Generation) -> Generation:
        """``generation`` (queued) starts running. Only a job that asked for the start message
        passes the outbox: the store writes a transition owing none as one statement."""
        outbox = self._outbox if asks_for(generation, WebhookEvent.START) else None
        marked = self._store.mark_running(generation.id, outbox=outbox, holder=self._holder)
        return self._told(await self._apply(marked))

    async def succeeded(
        self,
        generation_id: str,
        *,
        images: Sequence[StoredImage],
        provider_urls: Sequence[str],
        images_missing: int,
        cost: float | None = None,
        predict_seconds: float | None = None,
        predictions: Sequence[PredictionRecord] = (),
        request: GenerationRequest | None = None,
        recorded: Sequence[PredictionRecord] = (),
    ) -> Generation:
        marked = self._store.mark_succeeded(
            generation_id,
            images=images,
            provider_urls=provider_urls,
            images_missing=images_missing,
            outbox=self._outbox,
            cost=cost,
            predict_seconds=predict_seconds,
            holder=self._holder,
            predictions=predictions,
            request=request,
            recorded=recorded,
        )
        return self._told(await self._apply(marked))

    async def failed(
        self, generation_id: str, *, error: str, error_code: str, cost: float | None = None
    ) -> Generation:
        marked = self._store.mark_failed(
            generation_id,
            error=error,
            error_code=error_code,
            outbox=self._outbox,
            cost=cost,
            holder=self._holder,
        )
        return self._told(await self._apply(marked))

    async def canceled(self, generation_id: str, *, reason: str, fenced: bool = True) -> Generation:
        holder = self._holder if fenced else None
        marked = self._store.mark_canceled(
            generation_id, reason=reason, outbox=self._outbox, holder=holder
        )
        return self._told(await self._apply(marked))

    async def _apply(self, marked: Awaitable[Generation]) -> Generation:
        try:
            return await marked
        except InvalidTransition as lost:
            self._events.state(lost.current)
            raise

    def _told(self, generation: Generation) -> Generation:
        _log_state(generation)
        self._events.state(generation)
        event = event_of(generation.status)
        if event is not None and generation.webhook_url and event in generation.webhook_events:
            self._wake()
        return generation


def _log_state(generation: Generation) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    log.info(
        "generation %s %s",
        generation.id,
        generation.status.value,
        extra={
            "generation_id": generation.id,
            "status": generation.status.value,
            "model": generation.request.model,
            "error_code": generation.error_code,
        },
    )
