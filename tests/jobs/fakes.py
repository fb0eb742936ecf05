"""A provider whose predictions finish when the test says so, for runner and recovery tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from imagegen.errors import ImagegenError
from imagegen.models import (
    GenerationRequest,
    PendingCreate,
    PredictionRecord,
    ProviderImage,
    ProviderResult,
)
from imagegen.providers.base import GenerationContext


@dataclass
class GatedProvider:
    """Each generation makes ``predictions`` predictions (one create token each), reports 0.5
    progress, then waits for ``release``. ``error`` is raised instead of returning images."""

    name: str = "gated"
    predictions: int = 1
    error: ImagegenError | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    created: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    pending: list[PendingCreate] = field(default_factory=list)  # handed to resume
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def first_creates(self, request: GenerationRequest) -> tuple[PendingCreate, ...]:
        return ()  # announces no creates

    async def generate(
        self, request: GenerationRequest, context: GenerationContext
    ) -> ProviderResult:
        records = []
        for _ in range(self.predictions):
            await context.acquire_create()
            record = PredictionRecord(f"p{next(self._ids)}", {"prompt": request.prompt}, 1)
            self.created.append(record.prediction_id)
            await context.on_prediction(record)
            records.append(record)
        return await self._wait(request, records, context)

    async def resume(
        self,
        request: GenerationRequest,
        predictions: Sequence[PredictionRecord],
        context: GenerationContext,
        pending: Sequence[PendingCreate] = (),
    ) -> ProviderResult:
        self.resumed.extend(p.prediction_id for p in predictions)
        self.pending.extend(pending)
        return await self._wait(request, list(predictions), context)

    async def _wait(
        self,
        request: GenerationRequest,
        records: list[PredictionRecord],
        context: GenerationContext,
    ) -> ProviderResult:
        self.started.set()
        try:
            await context.on_progress(0.5)
            await self.release.wait()
        except asyncio.CancelledError:
            if not context.handing_back():  # shutting down: the next process resumes them
                self.canceled.extend(r.prediction_id for r in records)
            raise
        if self.error is not None:
            raise self.error
        images = tuple(
            ProviderImage(
                f"https://replicate.delivery/x/{r.prediction_id}-{i}.png", r.prediction_id
            )
            for r in records
            for i in range(request.num_images)
        )
        return ProviderResult(images=images[: request.num_images], requested=request.num_images)

    async def cancel(self, predictions: Sequence[PredictionRecord]) -> None:
        self.canceled.extend(p.prediction_id for p in predictions)

    async def aclose(self) -> None:
        return None


class CreatesOnly:
    """The rest of a provider whose test only creates: nothing to resume, cancel or close."""

    def first_creates(self, request: GenerationRequest) -> tuple[PendingCreate, ...]:
        return ()  # announces no creates

    async def resume(
        self,
        request: GenerationRequest,
        predictions: Sequence[PredictionRecord],
        context: GenerationContext,
        pending: Sequence[PendingCreate] = (),
    ) -> ProviderResult:
        raise AssertionError("nothing is resumed here")

    async def cancel(self, predictions: Sequence[PredictionRecord]) -> None:
        return None

    async def aclose(self) -> None:
        return None
