"""Per-job publish/subscribe of state changes and progress, for event streams and waiters.

Without a bus a listener hears only about jobs this process runs. With an ``EventBus`` (Redis
pub/sub, ``imagegen.shared.events``) every event is also published to the other processes, and
a job's events from them are delivered here while it has listeners; a remote ``state`` event
whose job could not be carried has none (``generation`` is None): the listener reads the store.
Either way
a listener also re-reads the store now and then (the SSE route, ``JobRunner.wait``), which
covers an event the bus lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from imagegen.models import Generation

log = logging.getLogger(__name__)

MAX_PENDING = 1000  # events a slow listener may have unread before new ones are dropped
READY_WAIT = 1.0  # longest wait for a bus to confirm it delivers a job's events


@dataclass(frozen=True, slots=True)
class JobEvent:
    """``state``: the job as a transition left it. ``progress``: a fraction in [0, 1]."""

    kind: Literal["state", "progress"]
    generation_id: str
    generation: Generation | None = None
    progress: float | None = None


class Subscription:
    """The events of one job since ``JobEvents.subscribe``; read with ``next``."""

    def __init__(self, generation_id: str, watching: Awaitable[None] | None = None) -> None:
        self.generation_id = generation_id
        self._queue: asyncio.Queue[JobEvent] = asyncio.Queue(MAX_PENDING)
        self._watching = watching

    async def ready(self) -> None:
        """Return once other processes' events of the job reach this subscription (at once
        without a bus; after ``READY_WAIT`` at most, the store re-reads covering the rest).
        Read the store after this, not before, and no change between the two is missed."""
        if self._watching is None:
            return
        watching, self._watching = self._watching, None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READY_WAIT):
                await asyncio.shield(watching)

    def _put(self, event: JobEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("events: a slow listener of %s missed an event", self.generation_id)

    async def next(self, within: float) -> JobEvent | None:
        """The next event, or None if none came within ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                return await self._queue.get()
        except TimeoutError:
            return None


class EventBus(Protocol):
    """Carries events between processes. Every method returns at once (the bus does its I/O in
    its own task) and never raises: a lost event is caught up by the store re-reads."""

    def publish(self, event: JobEvent) -> None:
        """Send an event of this process to the others."""

    def watch(self, generation_id: str) -> Awaitable[None]:
        """One more listener of the job: deliver its events from other processes
        (``JobEvents.deliver``); the awaitable completes once they are (it never raises)."""

    def unwatch(self, generation_id: str) -> None:
        """One listener fewer; with none left, stop delivering them."""


class JobEvents:
    """Fans each job's events out to its current subscribers. Publishing never blocks."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = {}
        self._bus: EventBus | None = None

    def attach(self, bus: EventBus) -> None:
        """Share events with other processes through ``bus`` (which calls ``deliver``); attach
        before anyone subscribes."""
        self._bus = bus

    @contextlib.contextmanager
    def subscribe(self, generation_id: str) -> Iterator[Subscription]:
        bus = self._bus
        subscription = Subscription(generation_id, bus.watch(generation_id) if bus else None)
        self._subscribers.setdefault(generation_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            listeners = self._subscribers.get(generation_id)
            if listeners is not None:
                listeners.discard(subscription)
                if not listeners:
                    del self._subscribers[generation_id]
            if bus is not None:
                bus.unwatch(generation_id)

    def state(self, generation: Generation) -> None:
        if self._heard(generation.id):
            self._publish(JobEvent("state", generation.id, generation=generation))

    def progress(self, generation_id: str, fraction: float) -> None:
        if self._heard(generation_id):
            self._publish(JobEvent("progress", generation_id, progress=fraction))

    def _heard(self, generation_id: str) -> bool:
        """Whether anyone may hear the job's events: a listener here, or other processes."""
        return self._bus is not None or generation_id in self._subscribers

    def listeners(self, generation_id: str) -> int:
        return len(self._subscribers.get(generation_id, ()))

    def deliver(self, event: JobEvent) -> None:
        """An event from another process: to this process's listeners only."""
        self._fan_out(event)

    def _publish(self, event: JobEvent) -> None:
        self._fan_out(event)
        if self._bus is not None:
            self._bus.publish(event)

    def _fan_out(self, event: JobEvent) -> None:
        for subscription in list(self._subscribers.get(event.generation_id, ())):
            subscription._put(event)
