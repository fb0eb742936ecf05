"""Idempotent creation: a retried create with the same ``Idempotency-Key`` gets the same job.

Except a job that failed because imagegen's database was at capacity (``StoreBusy``, a 503 that
asks the client to retry): its key is released, so the retry creates a job that can succeed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from imagegen.errors import IdempotencyConflict, StoreBusy
from imagegen.jobs.protocols import GenerationStore, Idempotency
from imagegen.models import Generation, JobStatus

_RETRYABLE_CODES = frozenset({StoreBusy("").code})


class IdempotencyKeys:
    """Finds the job a key names; keys older than ``ttl`` seconds are released and reused."""

    def __init__(self, store: GenerationStore, *, ttl: float, now: Callable[[], datetime]) -> None:
        self._store = store
        self._ttl = timedelta(seconds=ttl)
        self._now = now

    async def existing(self, idempotency: Idempotency) -> Generation | None:
        """The job created under this key (``IdempotencyConflict`` if with another request)."""
        existing = await self._store.find_by_idempotency_key(idempotency.key)
        if existing is None:
            return None
        expired = existing.created_at < self._now() - self._ttl
        if expired or _refused_for_capacity(existing):
            await self._store.release_idempotency_key(existing.id)
            return None
        return matching(existing, idempotency)


def _refused_for_capacity(job: Generation) -> bool:
    return job.status is JobStatus.FAILED and job.error_code in _RETRYABLE_CODES


def matching(existing: Generation, idempotency: Idempotency) -> Generation:
    if existing.request_hash != idempotency.request_hash:
        raise IdempotencyConflict(
            f"Idempotency-Key '{idempotency.shown or idempotency.key}' was already used with a "
            "different request"
        )
    return existing
