"""Per-job publish/subscribe of state changes and progress, for event streams and waiters.

In-process only: a listener hears about jobs this process runs. A listener of a job that runs
elsewhere (another replica) must also re-read the store now and then, as the SSE route and
``JobRunner.wait`` do; a shared bus (PostgreSQL ``LISTEN/NOTIFY``, Redis) would replace that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from imagegen.models import Generation

log = logging.getLogger(__name__)

MAX_PENDING = 1000  # events a slow listener may have unread before new ones are dropped


@dataclass(frozen=True, slots=True)
class JobEvent:
    """``state``: the job as a transition left it. ``progress``: a fraction in [0, 1]."""

    kind: Literal["state", "progress"]
    generation_id: str
    generation: Generation | None = None
    progress: float | None = None


class Subscription:
    """The events of one job since ``JobEvents.subscribe``; read with ``next``."""

    def __init__(self, generation_id: str) -> None:
        self.generation_id = generation_id
        self._queue: asyncio.Queue[JobEvent] = asyncio.Queue(MAX_PENDING)

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


class JobEvents:
    """Fans each job's events out to its current subscribers. Publishing never blocks."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = {}

    @contextlib.contextmanager
    def subscribe(self, generation_id: str) -> Iterator[Subscription]:
        subscription = Subscription(generation_id)
        self._subscribers.setdefault(generation_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            listeners = self._subscribers.get(generation_id)
            if listeners is not None:
                listeners.discard(subscription)
                if not listeners:
                    del self._subscribers[generation_id]

    def state(self, generation: Generation) -> None:
        self._publish(JobEvent("state", generation.id, generation=generation))

    def progress(self, generation_id: str, fraction: float) -> None:
        self._publish(JobEvent("progress", generation_id, progress=fraction))

    def listeners(self, generation_id: str) -> int:
        return len(self._subscribers.get(generation_id, ()))

    def _publish(self, event: JobEvent) -> None:
        for subscription in list(self._subscribers.get(event.generation_id, ())):
            subscription._put(event)
