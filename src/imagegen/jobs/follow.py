"""Following one job until it ends: its current state first, then each change and progress
report, then ``done``; what an event stream (SSE) sends.

Listening starts before the store is read, so no change between the two is missed; a change
already seen in the store is not repeated. Between events the store is re-read every
``heartbeat`` seconds, which also follows a job another replica runs when no bus carries its
events, and catches up an event the bus lost (see ``events.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from imagegen.jobs.events import JobEvents
from imagegen.jobs.protocols import GenerationStore
from imagegen.models import Generation


@dataclass(frozen=True, slots=True)
class Update:
    """``state`` and ``done`` carry the job; ``progress`` a fraction; ``heartbeat`` nothing."""

    kind: Literal["state", "progress", "heartbeat", "done"]
    generation: Generation | None = None
    progress: float | None = None


async def follow(
    store: GenerationStore, events: JobEvents, generation_id: str, *, heartbeat: float
) -> AsyncIterator[Update]:
    with events.subscribe(generation_id) as listener:
        await listener.ready()
        current = await store.get(generation_id)
        yield Update("state", current)
        while not current.status.is_terminal:
            event = await listener.next(heartbeat)
            if event is not None and event.kind == "progress":
                yield Update("progress", progress=event.progress)
                continue
            latest = event.generation if event is not None else None
            if latest is None:  # time to look again, or another process's change
                latest = await store.get(generation_id)
            if latest.status is current.status:
                if event is None:
                    yield Update("heartbeat")
                continue
            current = latest
            yield Update("state", current)
        yield Update("done", current)
