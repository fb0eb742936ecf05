"""An in-memory GenerationStore for runner and API unit tests (the SQL store has its own tests)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from imagegen.errors import IdempotencyKeyInUse, NotFound
from imagegen.models import Generation, GenerationRequest, JobStatus, PredictionRecord, StoredImage


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[str, Generation] = {}
        self._ids = itertools.count(1)
        self.healthy = True

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
        if idempotency_key is not None:
            for row in self.rows.values():
                if row.idempotency_key == idempotency_key:
                    raise IdempotencyKeyInUse(row)
        gid = f"gen_{next(self._ids):04d}"
        row = Generation(
            id=gid,
            status=JobStatus.QUEUED,
            request=request,
            provider=provider,
            created_at=datetime.now(UTC),
            metadata=dict(metadata or {}),
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        self.rows[gid] = row
        return row

    def _update(self, gid: str, **changes: Any) -> Generation:
        row = self.rows[gid]
        if row.status.is_terminal:
            return row
        row = replace(row, **changes)
        self.rows[gid] = row
        return row

    async def mark_running(self, generation_id: str) -> Generation:
        return self._update(generation_id, status=JobStatus.RUNNING, started_at=datetime.now(UTC))

    async def add_prediction(self, generation_id: str, record: PredictionRecord) -> None:
        row = self.rows[generation_id]
        self.rows[generation_id] = replace(row, predictions=(*row.predictions, record))

    async def mark_succeeded(
        self,
        generation_id: str,
        *,
        images: Sequence[StoredImage],
        provider_urls: Sequence[str],
        images_missing: int,
    ) -> Generation:
        return self._update(
            generation_id,
            status=JobStatus.SUCCEEDED,
            images=tuple(images),
            provider_urls=tuple(provider_urls),
            images_missing=images_missing,
            completed_at=datetime.now(UTC),
        )

    async def mark_failed(self, generation_id: str, *, error: str, error_code: str) -> Generation:
        return self._update(
            generation_id,
            status=JobStatus.FAILED,
            error=error,
            error_code=error_code,
            completed_at=datetime.now(UTC),
        )

    async def mark_canceled(self, generation_id: str, *, reason: str) -> Generation:
        return self._update(
            generation_id,
            status=JobStatus.CANCELED,
            error=reason,
            error_code="canceled",
            completed_at=datetime.now(UTC),
        )

    async def get(self, generation_id: str) -> Generation:
        try:
            return self.rows[generation_id]
        except KeyError:
            raise NotFound(f"generation '{generation_id}' not found") from None

    async def list(self, *, limit: int, cursor: str | None) -> tuple[list[Generation], str | None]:
        rows = sorted(self.rows.values(), key=lambda g: g.id, reverse=True)
        if cursor:
            rows = [g for g in rows if g.id < cursor]
        page = rows[:limit]
        return page, (page[-1].id if len(rows) > limit else None)

    async def list_unfinished(self) -> list[Generation]:
        return [g for g in self.rows.values() if not g.status.is_terminal]

    async def find_by_idempotency_key(self, key: str) -> Generation | None:
        return next((g for g in self.rows.values() if g.idempotency_key == key), None)

    async def release_idempotency_key(self, generation_id: str) -> None:
        self.rows[generation_id] = replace(self.rows[generation_id], idempotency_key=None)

    async def check(self) -> None:
        if not self.healthy:
            raise RuntimeError("database down")

    async def aclose(self) -> None:
        return None
