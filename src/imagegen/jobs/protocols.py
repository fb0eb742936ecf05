"""The seams the job runner depends on: the generation store and the image ingestor."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from imagegen.models import Generation, GenerationRequest, PredictionRecord, StoredImage


@dataclass(frozen=True, slots=True)
class Idempotency:
    """An ``Idempotency-Key`` and a digest of the request it was first used with."""

    key: str
    request_hash: str


class GenerationStore(Protocol):
    """Persistence of generation jobs (``imagegen.db.store`` implements it)."""

    async def create(
        self,
        request: GenerationRequest,
        *,
        provider: str,
        deadline_at: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> Generation:
        """Persist a queued job; raises ``IdempotencyKeyInUse`` if the key names another job."""
        ...

    async def release_idempotency_key(self, generation_id: str) -> None:
        """Forget the job's idempotency key (it expired), so the key can be used again."""
        ...

    async def mark_running(self, generation_id: str) -> Generation: ...

    async def add_prediction(self, generation_id: str, record: PredictionRecord) -> None: ...

    async def mark_succeeded(
        self,
        generation_id: str,
        *,
        images: Sequence[StoredImage],
        provider_urls: Sequence[str],
        images_missing: int,
    ) -> Generation: ...

    async def mark_failed(
        self, generation_id: str, *, error: str, error_code: str
    ) -> Generation: ...

    async def mark_canceled(self, generation_id: str, *, reason: str) -> Generation: ...

    async def get(self, generation_id: str) -> Generation:
        """Raises ``imagegen.errors.NotFound`` for an unknown id."""
        ...

    async def list(
        self, *, limit: int, cursor: str | None
    ) -> tuple[builtins.list[Generation], str | None]: ...

    async def list_unfinished(self) -> builtins.list[Generation]: ...

    async def find_by_idempotency_key(self, key: str) -> Generation | None: ...

    async def check(self) -> None: ...

    async def aclose(self) -> None: ...


class Ingestor(Protocol):
    """Downloads, verifies and stores one provider output (``imagegen.ingest`` implements it)."""

    async def ingest(self, url: str) -> StoredImage: ...
