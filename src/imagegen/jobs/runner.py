"""The job runner: runs each generation as an in-process task with a persisted state machine.

queued -> running -> succeeded | failed | canceled. A synchronous request is a job whose HTTP
response waits for it; every create endpoint goes through ``submit``. The provider's prediction
ids are persisted (``on_prediction``) before the provider waits on them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from imagegen.catalog import Catalog, Route
from imagegen.errors import (
    Canceled,
    DeadlineExceeded,
    IdempotencyConflict,
    IdempotencyKeyInUse,
    ImageFetchError,
    ImagegenError,
)
from imagegen.jobs.outcome import result_of
from imagegen.jobs.protocols import GenerationStore, Idempotency, Ingestor
from imagegen.models import (
    Generation,
    GenerationRequest,
    PredictionRecord,
    ProviderResult,
    StoredImage,
)
from imagegen.providers.base import GenerationContext

log = logging.getLogger(__name__)

# Extra time past the deadline before the runner stops a provider that overran it.
_BACKSTOP_SECONDS = 2.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class JobRunner:
    """Creates, runs, waits on and cancels generation jobs."""

    def __init__(
        self,
        *,
        store: GenerationStore,
        catalog: Catalog,
        ingestor: Ingestor | None,
        timeout: float,
        idempotency_ttl: float = 86400.0,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._ingestor = ingestor  # None: hand back the provider's own URLs
        self._timeout = timeout
        self._idempotency_ttl = idempotency_ttl
        self._now = now
        self._tasks: dict[str, asyncio.Task[Generation]] = {}
        self._progress: dict[str, float] = {}
        self._closing = False

    async def submit(
        self,
        request: GenerationRequest,
        *,
        deadline_seconds: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency: Idempotency | None = None,
    ) -> Generation:
        """Persist a queued job and start running it; returns at once.

        With ``idempotency``, a job already created under the same key is returned instead (the
        caller waits on it like any other); the same key with another request raises
        ``IdempotencyConflict``. Keys older than ``idempotency_ttl`` are released and reused.
        """
        route = self._catalog.resolve(request.model)
        if idempotency is not None:
            existing = await self._existing(idempotency)
            if existing is not None:
                return existing
        seconds = deadline_seconds if deadline_seconds is not None else self._timeout
        loop = asyncio.get_running_loop()
        try:
            generation = await self._store.create(
                request,
                provider=route.provider.name,
                deadline_at=self._now() + timedelta(seconds=seconds),
                metadata=metadata,
                idempotency_key=idempotency.key if idempotency else None,
                request_hash=idempotency.request_hash if idempotency else None,
            )
        except IdempotencyKeyInUse as exc:  # another request with this key won the race
            assert idempotency is not None
            return self._matching(exc.existing, idempotency)
        task = loop.create_task(
            self._run(generation.id, route, request, loop.time() + seconds),
            name=f"generation-{generation.id}",
        )
        self._tasks[generation.id] = task
        task.add_done_callback(functools.partial(self._finished, generation.id))
        return generation

    async def _existing(self, idempotency: Idempotency) -> Generation | None:
        existing = await self._store.find_by_idempotency_key(idempotency.key)
        if existing is None:
            return None
        if existing.created_at < self._now() - timedelta(seconds=self._idempotency_ttl):
            await self._store.release_idempotency_key(existing.id)
            return None
        return self._matching(existing, idempotency)

    @staticmethod
    def _matching(existing: Generation, idempotency: Idempotency) -> Generation:
        if existing.request_hash != idempotency.request_hash:
            raise IdempotencyConflict(
                f"Idempotency-Key '{idempotency.key}' was already used with a different request"
            )
        return existing

    async def wait(self, generation_id: str) -> Generation:
        """Wait for a job to end; raises the job's error if it failed or was canceled."""
        task = self._tasks.get(generation_id)
        if task is not None:
            return await asyncio.shield(task)
        return result_of(await self._store.get(generation_id))

    async def cancel(self, generation_id: str) -> Generation:
        """Cancel a job and its upstream predictions; a finished job is returned unchanged."""
        task = self._tasks.get(generation_id)
        if task is None:
            return await self._store.get(generation_id)
        task.cancel()
        try:
            return await asyncio.shield(task)
        except Canceled:
            return await self._store.get(generation_id)
        except ImagegenError:
            return await self._store.get(generation_id)

    def progress(self, generation_id: str) -> float | None:
        return self._progress.get(generation_id)

    def in_flight(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        """Stop running jobs without marking them: a restart resumes what they left running."""
        self._closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, generation_id: str, task: asyncio.Task[Generation]) -> None:
        self._tasks.pop(generation_id, None)
        self._progress.pop(generation_id, None)
        if not task.cancelled():
            task.exception()  # retrieved here so async jobs never log "never retrieved"

    async def _run(
        self, generation_id: str, route: Route, request: GenerationRequest, deadline: float
    ) -> Generation:
        try:
            await self._store.mark_running(generation_id)
            async with asyncio.timeout_at(deadline + _BACKSTOP_SECONDS):
                result = await self._generate(generation_id, route, request, deadline)
                return await self._finish(generation_id, result)
        except TimeoutError as exc:
            error: ImagegenError = DeadlineExceeded(
                "the generation did not finish before its deadline and was canceled"
            )
            await self._fail(generation_id, error)
            raise error from exc
        except ImagegenError as exc:
            await self._fail(generation_id, exc)
            raise
        except asyncio.CancelledError:
            if self._closing:
                raise
            await asyncio.shield(
                self._store.mark_canceled(generation_id, reason="canceled before it finished")
            )
            raise Canceled(f"generation '{generation_id}' was canceled") from None
        except Exception as exc:
            log.exception("generation %s failed unexpectedly", generation_id)
            await self._fail(generation_id, exc)
            raise

    async def _generate(
        self, generation_id: str, route: Route, request: GenerationRequest, deadline: float
    ) -> ProviderResult:
        async def on_prediction(record: PredictionRecord) -> None:
            await self._store.add_prediction(generation_id, record)

        async def on_progress(fraction: float) -> None:
            self._progress[generation_id] = fraction

        context = GenerationContext(
            deadline=deadline, on_prediction=on_prediction, on_progress=on_progress
        )
        upstream_request = replace(request, model=route.upstream_model)
        return await route.provider.generate(upstream_request, context)

    async def _finish(self, generation_id: str, result: ProviderResult) -> Generation:
        urls = [image.url for image in result.images]
        stored: list[StoredImage] = []
        lost = 0
        if self._ingestor is not None:
            stored, errors = await self._ingest_all(urls)
            if errors and not stored:
                raise errors[0]
            lost = len(errors)
        return await self._store.mark_succeeded(
            generation_id,
            images=stored,
            provider_urls=urls,
            images_missing=result.missing + lost,
        )

    async def _ingest_all(self, urls: list[str]) -> tuple[list[StoredImage], list[ImagegenError]]:
        assert self._ingestor is not None
        outcomes = await asyncio.gather(
            *(self._ingestor.ingest(url) for url in urls), return_exceptions=True
        )
        stored: list[StoredImage] = []
        errors: list[ImagegenError] = []
        for outcome in outcomes:
            if isinstance(outcome, StoredImage):
                stored.append(outcome)
            elif isinstance(outcome, ImagegenError):
                errors.append(outcome)
            elif isinstance(outcome, BaseException):
                errors.append(
                    ImageFetchError(f"image download failed: {outcome}", provider="imagegen")
                )
        return stored, errors

    async def _fail(self, generation_id: str, exc: BaseException) -> None:
        if isinstance(exc, ImagegenError):
            message, code = str(exc), exc.code
        else:
            message, code = "internal error", "internal_error"
        await asyncio.shield(self._store.mark_failed(generation_id, error=message, error_code=code))
