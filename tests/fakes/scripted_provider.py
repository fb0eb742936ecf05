"""A provider that follows a script, for runner and API unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from imagegen.errors import ImagegenError
from imagegen.models import (
    GenerationRequest,
    PendingCreate,
    PredictionRecord,
    ProviderImage,
    ProviderResult,
    StoredImage,
)
from imagegen.providers.base import GenerationContext


@dataclass
class ScriptedProvider:
    name: str = "scripted"
    delay: float = 0.0
    error: ImagegenError | None = None
    drop: int = 0
    calls: list[GenerationRequest] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def first_creates(self, request: GenerationRequest) -> tuple[PendingCreate, ...]:
        return ()  # announces no creates

    async def generate(
        self, request: GenerationRequest, context: GenerationContext
    ) -> ProviderResult:
        self.calls.append(request)
        record = PredictionRecord(
            f"p{len(self.calls)}", {"prompt": request.prompt}, request.num_images
        )
        await context.on_prediction(record)
        self.started.set()
        try:
            await context.on_progress(0.5)
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.canceled.append(record.prediction_id)
            raise
        if self.error is not None:
            raise self.error
        count = max(0, request.num_images - self.drop)
        images = tuple(
            ProviderImage(
                f"https://replicate.delivery/x/{request.prompt}-{i}.png", record.prediction_id
            )
            for i in range(count)
        )
        return ProviderResult(images=images, requested=request.num_images)

    async def resume(
        self,
        request: GenerationRequest,
        predictions: Sequence[PredictionRecord],
        context: GenerationContext,
        pending: Sequence[PendingCreate] = (),
    ) -> ProviderResult:
        return await self.generate(request, context)

    async def cancel(self, predictions: Sequence[PredictionRecord]) -> None:
        self.canceled.extend(p.prediction_id for p in predictions)

    async def aclose(self) -> None:
        return None


@dataclass
class FakeIngestor:
    fail_urls: set[str] = field(default_factory=set)
    error: ImagegenError | None = None

    async def ingest(self, url: str) -> StoredImage:
        if url in self.fail_urls and self.error is not None:
            raise self.error
        key = f"{abs(hash(url)):064d}"[:64] + ".png"
        return StoredImage(
            key=key, content_type="image/png", width=64, height=64, size_bytes=10, source_url=url
        )
