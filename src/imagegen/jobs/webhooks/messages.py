"""Which webhook messages a state change owes, and their bodies (rendered when it happens)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from imagegen.jobs.records import NewDelivery, Outbox, WebhookEvent
from imagegen.models import Generation, JobStatus

Render = Callable[[Generation], str]
"""The message body: the job as ``GET /api/v1/generations/{id}`` shows it (the API injects it)."""


def minimal_body(generation: Generation) -> str:
    """A body for when no renderer is injected (tests, embedding the runner without the API)."""
    return json.dumps(
        {"id": generation.id, "status": generation.status.value, "error": generation.error}
    )


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def event_of(status: JobStatus) -> WebhookEvent | None:
    if status is JobStatus.RUNNING:
        return WebhookEvent.START
    if status.is_terminal:
        return WebhookEvent.COMPLETED
    return None


class WebhookMessages:
    """Builds the outbox rows of a transition for jobs that asked for its event."""

    def __init__(
        self, render: Render = minimal_body, new_id: Callable[[], str] = new_message_id
    ) -> None:
        self._render = render
        self._new_id = new_id

    def outbox(self) -> Outbox:
        return self._deliveries

    def _deliveries(self, generation: Generation) -> list[NewDelivery]:
        event = event_of(generation.status)
        url = generation.webhook_url
        if event is None or url is None or not asks_for(generation, event):
            return []
        return [NewDelivery(self._new_id(), generation.id, event, url, self._render(generation))]


def asks_for(generation: Generation, event: WebhookEvent) -> bool:
    """Whether the job asked for ``event``'s messages (its webhook is set when it is created and
    never changes, so any copy of the job tells)."""
    return generation.webhook_url is not None and event.value in generation.webhook_events
