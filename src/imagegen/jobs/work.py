"""Running one job to its end: wait for a provider slot, start (or resume) the provider's work,
store the images, and settle the job's state whatever happens.

The runner decides *what* to run (a ``Plan``); this module decides how each outcome is written:
success, the provider's error, the deadline, a cancel, or a lost race. A lost race
(``InvalidTransition``: another writer ended the job first) settles with what that writer
recorded. A task cancelled because the process is shutting down writes nothing, so a restart
resumes the job. A final write the database refuses for capacity (``StoreBusy``) is tried again
after ``STORE_RETRY_DELAYS`` (so is the record of a prediction just created: it is paid for);
if it still fails the job is left as it is, and once its lease runs out recovery adopts it and
settles it (``recovery.py``). The database itself never refuses a job's writes for want of a
connection: they go before new jobs and wait (``db/database.py``).

The deadline bounds the provider's work, not the storing of what it made: the predictions are
paid for by then, and an output that cannot be stored for a local fault is stored again until
storage is back (``outputs.py``). A task cancelled for shutdown leaves its predictions running
upstream (``GenerationContext.handing_back``), for the next process to resume. So does a task
whose job another instance adopted (``fencing.py``: its writes raise ``LeaseLost``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from imagegen.catalog import Route
from imagegen.errors import (
    Canceled,
    DeadlineExceeded,
    ImagegenError,
    InvalidTransition,
    LeaseLost,
    StoreBusy,
)
from imagegen.jobs.events import JobEvents
from imagegen.jobs.fencing import LeaseFence
from imagegen.jobs.lifecycle import Transitions
from imagegen.jobs.limits import ProviderLimits, QueueTicket
from imagegen.jobs.observe import JobObserver, NoObserver, add_upstream_time
from imagegen.jobs.outcome import result_of
from imagegen.jobs.outputs import OutputStore
from imagegen.jobs.protocols import GenerationStore, Ingestor
from imagegen.models import (
    Generation,
    JobStatus,
    PendingCreate,
    PredictionRecord,
    ProviderResult,
    StoredImage,
)
from imagegen.providers.base import GenerationContext

log = logging.getLogger(__name__)
T = TypeVar("T")

# Extra time past the deadline before the runner stops a provider that overran it.
BACKSTOP_SECONDS = 2.0
# Pauses before writing a job's final state again when the database was at capacity.
STORE_RETRY_DELAYS = (0.2, 1.0, 3.0)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Plan:
    """One run of a job: ``started`` jobs are recovered ones already ``running``: they resume
    their stored predictions and the creates that were in flight, if they have any. A new job
    written ``running`` (it had a slot at once) is not ``started``: it has nothing to resume;
    it may have been written with the creates its provider sends first (``creates``).
    ``deadline`` is on the event loop's clock."""

    generation: Generation
    route: Route
    deadline: float
    ticket: QueueTicket
    started: bool = False
    #: The creates written pending with the job (their create tokens taken already), and when
    #: that write began (loop time).
    creates: tuple[PendingCreate, ...] = ()
    written_at: float | None = None


class JobWork:
    def __init__(
        self,
        *,
        store: GenerationStore,
        transitions: Transitions,
        events: JobEvents,
        limits: ProviderLimits,
        ingestor: Ingestor | None,
        closing: Callable[[], bool],
        retry_delays: Sequence[float] = STORE_RETRY_DELAYS,
        observer: JobObserver | None = None,
        fence: LeaseFence,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._store = store
        self.fence = fence
        self._transitions = transitions
        self._events = events
        self._limits = limits
        # None: hand back the provider's own URLs.
        self._outputs = None if ingestor is None else OutputStore(ingestor)
        self._closing = closing
        self._retry_delays = tuple(retry_delays)
        self._observer = observer or NoObserver()
        self._clock = clock
        self.progress: dict[str, float] = {}
        # Predictions handed over by ``record_finished``, by job: being recorded while the
        # outputs are stored, or (nothing to store) kept for the job's success to record.
        self._recording: dict[str, list[tuple[PredictionRecord, asyncio.Task[bool]]]] = {}
        self._kept: dict[str, list[PredictionRecord]] = {}

    async def run(self, plan: Plan) -> Generation:
        """The job's final state; raises its error if it failed or was canceled."""
        ended: Generation | None = None
        try:
            ended = await self._run(plan)
            return ended
        except LeaseLost:  # another instance adopted it: it ends there
            self.fence.lose(plan.generation.id)
            raise
        except ImagegenError:
            ended = await self._final_state(plan.generation.id)
            raise
        finally:
            if ended is not None:
                self._observer.ended(ended)

    async def _final_state(self, generation_id: str) -> Generation | None:
        try:
            generation = await self._store.get(generation_id)
        except Exception:  # only for the metrics: never mask the job's own error
            return None
        return generation if generation.status.is_terminal else None

    async def _run(self, plan: Plan) -> Generation:
        generation_id = plan.generation.id
        try:
            async with asyncio.timeout_at(plan.deadline + BACKSTOP_SECONDS):
                result = await self._provide(plan)
            # Past the deadline too: the predictions are paid for, so their outputs are kept.
            return await self._finish(plan, result)
        except InvalidTransition as lost:
            return result_of(lost.current)
        except LeaseLost:
            raise
        except _Unsettled as unsettled:  # succeeded, but the database would not record it
            raise unsettled.error from unsettled.error.__cause__
        except TimeoutError as exc:
            error = DeadlineExceeded(
                "the generation did not finish before its deadline and was canceled"
            )
            return await self._end(generation_id, error, cause=exc)
        except ImagegenError as exc:
            return await self._end(generation_id, exc, cost=plan.route.pricing.failed_cost())
        except asyncio.CancelledError:
            if self._closing() or generation_id in self.fence.lost:
                raise
            return await self._canceled(generation_id)
        except Exception as exc:
            log.exception("generation %s failed unexpectedly", generation_id)
            return await self._end(generation_id, exc)
        finally:  # the runner gives up the job's ticket when its task ends (``_spawn``)
            self.progress.pop(generation_id, None)
            self._recording.pop(generation_id, None)  # shutting down: they finish on their own
            self._kept.pop(generation_id, None)  # their pending creates lead recovery to them

    async def fail(self, generation_id: str, exc: Exception) -> Generation:
        """Fail a job that cannot run at all (its model is no longer served, say)."""
        return await self._end(generation_id, exc)

    async def expire(self, generation: Generation, route: Route) -> Generation:
        """A recovered job already past its deadline: cancel its predictions, fail it."""
        try:
            await route.provider.cancel(generation.predictions)
        except Exception:  # best effort: the job is failed whatever the provider says
            log.exception("could not cancel the predictions of expired %s", generation.id)
        error = DeadlineExceeded(
            "the generation passed its deadline while imagegen was down; "
            "its predictions were canceled"
        )
        return await self._end(generation.id, error)

    async def _provide(self, plan: Plan) -> ProviderResult:
        provider = plan.route.provider.name
        limiter = self._limits(provider)
        # Counted as queued only when it waits: a free slot is taken without yielding to the
        # loop, so no reading of the gauge made on the loop could see it there.
        waiting = not plan.ticket.holds_slot and not limiter.free()
        if waiting:
            self._observer.queued(provider, 1)
        try:
            async with limiter.slot(plan.ticket, plan.deadline):
                if waiting:
                    waiting = False
                    self._observer.queued(provider, -1)
                waited = (self._clock() - plan.generation.created_at).total_seconds()
                self._observer.running(provider, 1, queued_seconds=None if plan.started else waited)
                try:
                    return await self._call_provider(plan, limiter.acquire_create)
                finally:
                    self._observer.running(provider, -1)
        finally:
            if waiting:
                self._observer.queued(provider, -1)

    async def _call_provider(
        self, plan: Plan, acquire_create: Callable[[float], Awaitable[None]]
    ) -> ProviderResult:
        generation = plan.generation
        provider = plan.route.provider.name
        if generation.status is JobStatus.QUEUED:
            await self._transitions.running(generation)
        elif not plan.started:  # written running: it had a slot at once
            self._transitions.started(generation)

        prepaid = len(plan.creates)  # the tokens of the creates written with the job: taken

        async def create_turn() -> None:
            nonlocal prepaid
            if prepaid:
                prepaid -= 1
            else:
                await acquire_create(plan.deadline)
            self._observer.upstream_create(provider)

        fence, holder, job = self.fence, self.fence.holder, generation.id
        context = GenerationContext(
            deadline=plan.deadline,
            on_prediction=self._recorder(job),
            on_progress=partial(self._on_progress, job),
            acquire_create=create_turn,
            metered=plan.route.pricing.per_second is not None,
            on_create=fence.begin_create(job, plan.creates, plan.written_at),
            adopt=fence.guard(job, partial(self._store.adopt_prediction, job, holder=holder)),
            claim=fence.guard(
                job, partial(self._store.adopt_prediction, job, sole=True, holder=holder)
            ),
            handing_back=lambda: self._closing() or job in fence.lost,
            record_finished=partial(self._record_finished, job),
        )
        request = generation.request
        if request.model != plan.route.upstream_model:
            request = replace(request, model=plan.route.upstream_model)
        started = time.perf_counter()
        error_code: str | None = None
        try:
            if plan.started:  # recovered: resume what it had upstream, if anything
                predictions = generation.predictions
                pending = await self._store.pending_creates(generation.id)
                if predictions or pending:
                    return await plan.route.provider.resume(request, predictions, context, pending)
            return await plan.route.provider.generate(request, context)
        except ImagegenError as exc:
            error_code = exc.code
            raise
        finally:
            seconds = time.perf_counter() - started
            add_upstream_time(seconds)
            self._observer.upstream_done(provider, seconds, error_code)

    async def _record_prediction(
        self, generation_id: str, holder: str, record: PredictionRecord
    ) -> bool:
        """Record a prediction just created, paid for: again while the database is at
        capacity, as a final state is written. True when this recorded it new."""
        write = partial(self._store.add_prediction, generation_id, record, holder=holder)
        what = f"recording prediction {record.prediction_id}"
        return await self._again_while_busy(generation_id, what, write)

    def _recorder(self, generation_id: str) -> Callable[[PredictionRecord], Awaitable[bool]]:
        """``_record_prediction`` for the job, under its lease (``LeaseLost`` marks it lost)."""
        return self.fence.guard(
            generation_id, partial(self._record_prediction, generation_id, self.fence.holder)
        )

    def _record_finished(self, generation_id: str, record: PredictionRecord) -> None:
        """Record a prediction whose create reply was final, without the provider waiting.

        With outputs to store, the write runs while they are fetched and stored, and
        ``_recorded`` waits for it before the job's end state is written. With none (provider
        URLs passed through) nothing would overlap it: it is kept, and the success records it
        in its own transaction (one write less); a failure or a cancel writes it first."""
        if self._outputs is None:
            self._kept.setdefault(generation_id, []).append(record)
            return
        task = asyncio.ensure_future(self._recorder(generation_id)(record))
        task.add_done_callback(_retrieve)  # a job handed back on shutdown never looks
        self._recording.setdefault(generation_id, []).append((record, task))

    async def _recorded(
        self, generation_id: str, *, kept_too: bool = True
    ) -> tuple[PredictionRecord, ...]:
        """Wait until the predictions handed over by ``record_finished`` are recorded
        (``kept_too``: write the kept ones now); raises the first write's error
        (``LeaseLost``, or ``StoreBusy`` once retries ran out). Each is forgotten only once
        recorded: a wait cancelled midway (a user's cancel) leaves the rest for the next.

        Returns the prediction a handed-over write recorded new, when there was one such
        write (several run at once, in an order nothing here vouches for): the job's success
        need not read it back."""
        kept = self._kept.get(generation_id) if kept_too else None
        while kept:
            await self._recorder(generation_id)(kept[0])
            kept.pop(0)
        recording = self._recording.get(generation_id)
        if not recording:
            return ()
        tasks = [task for _, task in recording]
        outcomes = await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
        self._recording.pop(generation_id, None)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return (recording[0][0],) if outcomes == [True] else ()

    async def _recorded_if_possible(self, generation_id: str) -> None:
        """``_recorded`` before a failure or a cancel is written: the job ends either way."""
        try:
            await self._recorded(generation_id)
        except Exception as exc:
            log.warning("generation %s: a prediction was not recorded: %r", generation_id, exc)

    async def _on_progress(self, generation_id: str, fraction: float) -> None:
        self.progress[generation_id] = fraction
        self._events.progress(generation_id, fraction)

    async def _finish(self, plan: Plan, result: ProviderResult) -> Generation:
        generation_id = plan.generation.id
        stored: list[StoredImage] = []
        lost = 0
        if self._outputs is not None:
            started = time.perf_counter()
            stored, errors = await self._outputs.store_all(generation_id, result.images)
            size = sum(image.size_bytes for image in stored)
            seconds = time.perf_counter() - started
            self._observer.stored(plan.route.provider.name, seconds, len(stored), size)
            if errors and not stored:
                raise errors[0]
            lost = len(errors)
        kept = tuple(self._kept.get(generation_id, ()))  # recorded with the success, in one write
        # The others, before the job's end.
        recorded = await self._recorded(generation_id, kept_too=False)
        succeeded = partial(
            self._transitions.succeeded,
            generation_id,
            images=stored,
            provider_urls=[image.url for image in result.images],
            images_missing=result.missing + lost,
            # The upstream made (and billed) every image it returned, stored or not.
            cost=plan.route.pricing.cost(len(result.images), result.predict_seconds),
            predict_seconds=result.predict_seconds,
            predictions=kept,
            request=plan.generation.request,
            recorded=recorded,
        )
        try:
            done = await self._settle(generation_id, succeeded)
        except StoreBusy as exc:
            raise _Unsettled(exc) from exc
        except InvalidTransition:  # another writer ended it: its predictions are still its own
            await self._recorded_if_possible(generation_id)
            raise
        self._kept.pop(generation_id, None)
        return done

    async def _end(
        self,
        generation_id: str,
        exc: Exception,
        *,
        cause: BaseException | None = None,
        cost: float | None = None,
    ) -> Generation:
        """Record the failure and raise ``exc``, unless another writer ended the job first:
        then settle with what it recorded."""
        if isinstance(exc, ImagegenError):
            message, code = str(exc), exc.code
        else:
            message, code = "internal error", "internal_error"
        failed = partial(
            self._transitions.failed, generation_id, error=message, error_code=code, cost=cost
        )
        await self._recorded_if_possible(generation_id)
        try:
            await asyncio.shield(self._settle(generation_id, failed))
        except InvalidTransition as lost:
            return result_of(lost.current)
        except StoreBusy:
            pass  # logged by _settle; recovery settles the job
        raise exc from cause or exc.__cause__

    async def _canceled(self, generation_id: str) -> Generation:
        canceled = partial(
            self._transitions.canceled, generation_id, reason="canceled before it finished"
        )
        await self._recorded_if_possible(generation_id)
        try:
            await asyncio.shield(self._settle(generation_id, canceled))
        except InvalidTransition as lost:  # it ended first: the cancel came too late
            return result_of(lost.current)
        except StoreBusy:
            pass  # logged by _settle; recovery settles the job
        raise Canceled(f"generation '{generation_id}' was canceled") from None

    async def _settle(
        self, generation_id: str, write: Callable[[], Awaitable[Generation]]
    ) -> Generation:
        """Write a job's final state, again while the database is at capacity; the last
        ``StoreBusy`` propagates."""
        try:
            return await self._again_while_busy(generation_id, "writing its end", write)
        except StoreBusy:
            log.warning(
                "generation %s: the database would not record its end; recovery will settle it "
                "once its lease runs out",
                generation_id,
            )
            raise

    async def _again_while_busy(
        self, generation_id: str, what: str, write: Callable[[], Awaitable[T]]
    ) -> T:
        """``write()``, again after each of ``retry_delays`` while the database is at
        capacity (``StoreBusy``); the last ``StoreBusy`` propagates."""
        for delay in self._retry_delays:
            try:
                return await write()
            except StoreBusy as exc:
                log.info("generation %s: %s; %s again in %gs", generation_id, exc, what, delay)
            await asyncio.sleep(delay)
        return await write()


def _retrieve(task: asyncio.Task[bool]) -> None:
    if not task.cancelled():
        task.exception()


class _Unsettled(Exception):
    """The provider's work succeeded but the database would not record it (``error``)."""

    def __init__(self, error: StoreBusy) -> None:
        super().__init__(str(error))
        self.error = error
