"""What the job machinery tells an observer (``imagegen.metrics`` counts it for Prometheus),
and the time a request's own job spent upstream (its ``Server-Timing``).

The core never imports a metrics library: it calls a ``JobObserver``. Every method must be
cheap and must not raise.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from imagegen.models import Generation


class JobObserver(Protocol):
    def queued(self, provider: str, delta: int) -> None:
        """A job starts (+1) or stops (-1) waiting for a provider slot."""

    def running(self, provider: str, delta: int, *, queued_seconds: float | None = None) -> None:
        """A job got (+1, after ``queued_seconds`` in the queue) or left (-1) its slot."""

    def upstream_create(self, provider: str) -> None:
        """A paid upstream call (a prediction create) is about to go out."""

    def upstream_done(self, provider: str, seconds: float, error_code: str | None) -> None:
        """The provider's work ended after ``seconds``; ``error_code`` when it failed."""

    def stored(self, provider: str, seconds: float, images: int, size_bytes: int) -> None:
        """Outputs were downloaded and stored."""

    def ended(self, generation: Generation) -> None:
        """A job reached its final state."""

    def webhook_attempt(self, outcome: str) -> None:
        """A webhook delivery was ``delivered``, ``failed`` (will retry) or ``given_up``."""


class NoObserver:
    """Observes nothing."""

    def queued(self, provider: str, delta: int) -> None:
        pass

    def running(self, provider: str, delta: int, *, queued_seconds: float | None = None) -> None:
        pass

    def upstream_create(self, provider: str) -> None:
        pass

    def upstream_done(self, provider: str, seconds: float, error_code: str | None) -> None:
        pass

    def stored(self, provider: str, seconds: float, images: int, size_bytes: int) -> None:
        pass

    def ended(self, generation: Generation) -> None:
        pass

    def webhook_attempt(self, outcome: str) -> None:
        pass


@dataclass(slots=True)
class RequestTiming:
    """Seconds a request's jobs spent upstream. The HTTP edge sets one per request; a job
    started by that request inherits it (asyncio copies the context into the job's task)."""

    upstream: float = 0.0


request_timing: ContextVar[RequestTiming | None] = ContextVar("request_timing", default=None)


def add_upstream_time(seconds: float) -> None:
    timing = request_timing.get()
    if timing is not None:
        timing.upstream += seconds
