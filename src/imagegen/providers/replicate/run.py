"""Driving one generation's predictions to the end: create or reattach, record, poll, cancel.

Each create is announced (``context.on_create``) before it is sent, and its prediction recorded
(``context.on_prediction``) before it is waited on (one whose create reply is final already is
handed to ``context.record_finished``, when given, and recorded while its outputs are fetched);
a resumed run adopts the predictions of creates whose reply never came, found upstream
(``orphans.py``), before creating any again.

Every prediction of a generation runs in one ``asyncio.TaskGroup``. The run keeps the ids of the
ones not yet finished; whatever ends the run early (the deadline, the task being cancelled, or
any prediction failing) cancels those upstream, shielded and best effort, before the error goes
on. ``Cancel-After`` on each create is the backstop for a prediction whose create reply we never
saw. A create in flight when the run is cancelled is left to finish in the background and its
prediction is then cancelled: its id only arrives with the reply. When the run is cancelled
because imagegen shuts down (``context.handing_back()``), nothing is cancelled upstream: the
next process resumes the predictions.

A failing prediction does not stop its siblings: nothing a user paid for is dropped. If at least
one prediction made images the run returns them (the caller reports the shortfall); if none did,
the first failure is raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Any

from imagegen.errors import DeadlineExceeded, ImagegenError, UpstreamError
from imagegen.models import PendingCreate, PredictionRecord, ProviderImage
from imagegen.providers.base import GenerationContext
from imagegen.providers.replicate.client import ReplicateClient
from imagegen.providers.replicate.mapping import PlannedPrediction
from imagegen.providers.replicate.orphans import find_lost, find_orphans, hunt, outcome_unknown
from imagegen.providers.replicate.prediction import Prediction, PredictionStatus
from imagegen.providers.replicate.refs import ModelRef
from imagegen.providers.replicate.retry import Clock, Sleep
from imagegen.providers.replicate.uploads import recordable

log = logging.getLogger(__name__)

_background: set[asyncio.Task[None]] = set()  # shielded cancels outliving a cancelled caller


def deadline_exceeded() -> DeadlineExceeded:
    return DeadlineExceeded(
        "Replicate: the generation did not finish before its deadline; "
        "its predictions were canceled"
    )


class deadline_scope:  # used as a function: ``async with deadline_scope(...)``
    """Bound the body by ``deadline``; ``DeadlineExceeded`` when it passes (or already has).

    A class rather than a generator-based context manager: it is entered once per generation,
    and a generator's frame and ``asend`` round trips cost more than the timer itself."""

    __slots__ = ("_clock", "_deadline", "_timeout")

    def __init__(self, deadline: float, clock: Clock) -> None:
        self._deadline = deadline
        self._clock = clock

    async def __aenter__(self) -> None:
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            raise deadline_exceeded()
        self._timeout = asyncio.timeout(remaining)
        await self._timeout.__aenter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self._timeout.__aexit__(kind, exc, traceback)
        except TimeoutError as timed_out:
            raise deadline_exceeded() from timed_out
        if isinstance(exc, TimeoutError):  # one from the body is the deadline's too, as before
            raise deadline_exceeded() from exc


async def cancel_all(
    client: ReplicateClient, ids: Sequence[str], *, clock: Clock, within: float
) -> None:
    """Best effort: cancel each prediction concurrently, within ``within`` s; never raises."""

    async def cancel_one(prediction_id: str) -> None:
        try:
            await client.cancel(prediction_id, deadline=clock() + within)
        except UpstreamError as exc:
            log.warning("replicate: could not cancel prediction %s: %s", prediction_id, exc)

    try:
        async with asyncio.timeout(within):
            await asyncio.gather(*(cancel_one(pid) for pid in ids))
    except TimeoutError:
        log.warning("replicate: canceling %s timed out", ", ".join(ids))


def pending_create(ref: ModelRef, plan: PlannedPrediction) -> PendingCreate:
    """The create of ``plan`` on ``ref`` as ``on_create`` announces it before it is sent (and
    ``ReplicateProvider.first_creates`` foretells it)."""
    return PendingCreate(str(ref), dict(plan.inputs), plan.images)


async def _outcomes(
    jobs: Sequence[Callable[[], Coroutine[Any, Any, list[ProviderImage]]]],
) -> list[list[ProviderImage] | BaseException]:
    """Every job run at once, each its images or its exception; one job (the common case) runs
    in this task, without a task of its own. The caller being cancelled cancels them all."""
    if len(jobs) == 1:
        try:
            return [await jobs[0]()]
        except Exception as exc:
            return [exc]
    return await asyncio.gather(*(job() for job in jobs), return_exceptions=True)


class PredictionRun:
    """The predictions of one generation, polled to the end within ``context.deadline``."""

    def __init__(
        self,
        client: ReplicateClient,
        context: GenerationContext,
        *,
        wait_seconds: int,
        poll_interval: float,
        cancel_timeout: float,
        sleep: Sleep,
        clock: Clock,
    ) -> None:
        self._client = client
        self._context = context
        self._wait_seconds = wait_seconds
        self._poll_interval = poll_interval
        self._cancel_timeout = cancel_timeout
        self._sleep = sleep
        self._clock = clock
        self._open: set[str] = set()
        self._progress: list[float] = []
        self._reported = 0.0
        self._predict_times: list[float | None] = []

    @property
    def predict_seconds(self) -> float | None:
        """Seconds billed for the predictions that delivered images; None if any is unknown."""
        times = self._predict_times
        if not times or any(seconds is None for seconds in times):
            return None
        return sum(seconds for seconds in times if seconds is not None)

    async def create_all(
        self, ref: ModelRef, plans: Sequence[PlannedPrediction]
    ) -> list[ProviderImage]:
        """Create one prediction per plan, record each, and wait for them all."""
        return await self._run(
            [partial(self._create, slot, ref, plan) for slot, plan in enumerate(plans)]
        )

    async def resume_all(
        self, records: Sequence[PredictionRecord], pending: Sequence[PendingCreate] = ()
    ) -> list[ProviderImage]:
        """Wait for predictions created earlier. A create in flight when the process stopped
        (``pending``) adopts the prediction it started if one is found upstream, and only
        otherwise creates (``orphans.py``)."""
        self._open.update(record.prediction_id for record in records)
        async with deadline_scope(self._context.deadline, self._clock):
            orphans = await find_orphans(
                self._client,
                pending,
                taken=self._open,
                adopt=self._context.adopt,
                deadline=self._context.deadline,
                sleep=self._sleep,
            )
        jobs = [partial(self._reattach, slot, record) for slot, record in enumerate(records)]
        for create, orphan in zip(pending, orphans, strict=True):
            slot = len(jobs)
            if orphan is not None:
                self._open.add(orphan.id)
                jobs.append(partial(self._poll, slot, orphan))
            else:  # it never reached Replicate: create it now (it is recorded as pending)
                ref = ModelRef.parse(create.model)
                plan = PlannedPrediction(create.inputs, create.images_requested)
                jobs.append(partial(self._create, slot, ref, plan, announce=False))
        return await self._run(jobs)

    async def _run(
        self, jobs: Sequence[Callable[[], Coroutine[Any, Any, list[ProviderImage]]]]
    ) -> list[ProviderImage]:
        self._progress = [0.0] * len(jobs)
        try:
            async with deadline_scope(self._context.deadline, self._clock):
                outcomes = await _outcomes(jobs)
        except (DeadlineExceeded, asyncio.CancelledError):
            await self._cancel_open()
            raise
        images = [image for outcome in outcomes if isinstance(outcome, list) for image in outcome]
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        for failure in failures:
            if isinstance(failure, DeadlineExceeded) or not isinstance(failure, Exception):
                await self._cancel_open()  # the deadline, or CancelledError: stop everything
                raise failure
        if failures and not images:
            await self._cancel_open()
            first = failures[0]
            raise first from first.__cause__  # the first failure, chained to its own cause
        if failures:
            log.warning(
                "replicate: %d of %d predictions failed: %s", len(failures), len(jobs), failures[0]
            )
        return images

    async def _create(
        self, slot: int, ref: ModelRef, plan: PlannedPrediction, *, announce: bool = True
    ) -> list[ProviderImage]:
        """Create one prediction; ``announce``: record it as pending first (not when it is
        pending already, a create from before a restart that never reached Replicate)."""
        await self._context.acquire_create()  # imagegen's create rate limit: one token each
        announced = pending_create(ref, plan)
        if announce:  # before it is sent: a crash from here on leaves a trail to search
            await self._context.on_create(announced)
        sent_at = datetime.now(UTC)  # the create as it went out: built only when it is looked for
        create = asyncio.get_running_loop().create_task(
            self._client.create(
                ref,
                plan.inputs,
                wait_seconds=self._wait_seconds,
                deadline=self._context.deadline,
                pace=self._context.acquire_create,  # a throttled create waits its turn again
            )
        )
        try:
            prediction = await asyncio.shield(create)
        except asyncio.CancelledError:
            if not self._context.handing_back():
                pending = replace(announced, sent_at=sent_at)
                self._cancel_when_created(create, pending)
            raise
        except UpstreamError as exc:
            if not outcome_unknown(exc):
                raise
            lost = await find_lost(
                self._client,
                replace(announced, sent_at=sent_at),
                claim=self._context.claim,
                deadline=self._context.deadline,
                sleep=self._sleep,
            )
            if lost is None:
                raise
            self._open.add(lost.id)  # claimed: recorded as the job's already
            return await self._poll(slot, lost)
        self._open.add(prediction.id)
        record = PredictionRecord(prediction.id, recordable(plan.inputs), plan.images)
        # Sync mode answers a file-output model once all files are uploaded, possibly while
        # the status still says "processing": such a create reply is final (notes §1.2).
        final = prediction.status is PredictionStatus.PROCESSING and bool(prediction.image_urls)
        if (final or prediction.status.is_terminal) and self._context.record_finished:
            self._context.record_finished(record)  # nothing to wait on: recorded meanwhile
        else:
            await self._context.on_prediction(record)
        if final:
            return await self._finished(slot, prediction)
        return await self._poll(slot, prediction)

    async def _reattach(self, slot: int, record: PredictionRecord) -> list[ProviderImage]:
        prediction = await self._client.get(record.prediction_id, deadline=self._context.deadline)
        return await self._poll(slot, prediction)

    async def _poll(self, slot: int, prediction: Prediction) -> list[ProviderImage]:
        while not prediction.status.is_terminal:
            await self._report(slot, prediction.progress)
            remaining = self._context.deadline - self._clock()
            if remaining <= 0:
                raise deadline_exceeded()
            await self._sleep(min(self._poll_interval, remaining))
            prediction = await self._client.get(prediction.id, deadline=self._context.deadline)
        failure = prediction.failure()
        if failure is not None:
            self._open.discard(prediction.id)
            raise failure
        return await self._finished(slot, prediction)

    async def _finished(self, slot: int, prediction: Prediction) -> list[ProviderImage]:
        self._open.discard(prediction.id)
        await self._report(slot, 1.0)
        seconds = prediction.predict_time
        if seconds is None and self._context.metered:  # read again only when it is needed
            seconds = await self._predict_time(prediction)
        self._predict_times.append(seconds)
        return [ProviderImage(url, prediction.id) for url in prediction.image_urls]

    async def _predict_time(self, prediction: Prediction) -> float | None:
        """The billed seconds, which a sync-mode answer comes before Replicate records: read the
        prediction again (best effort, within the deadline), for a caller pricing by them."""
        try:
            while True:
                latest = await self._client.get(prediction.id, deadline=self._context.deadline)
                if latest.status.is_terminal or latest.predict_time is not None:
                    return latest.predict_time
                remaining = self._context.deadline - self._clock()
                if remaining <= 0:
                    return None
                await self._sleep(min(self._poll_interval, remaining))
        except ImagegenError as exc:
            log.info("replicate: no metrics for %s: %s", prediction.id, exc)
            return None

    async def _report(self, slot: int, fraction: float | None) -> None:
        """Report the mean progress over all predictions when it grows (tqdm bars may restart)."""
        if fraction is None or fraction <= self._progress[slot]:
            return
        self._progress[slot] = fraction
        overall = sum(self._progress) / len(self._progress)
        if overall > self._reported:
            self._reported = overall
            await self._context.on_progress(overall)

    def _cancel_when_created(
        self, create: asyncio.Future[Prediction], pending: PendingCreate
    ) -> None:
        """The run was cancelled mid-create: cancel its prediction once the reply names it, or
        sooner, once the list shows it (``orphans.hunt``: a sync-mode create is slow to answer).
        """
        looking = asyncio.ensure_future(
            hunt(
                self._client,
                create,
                pending,
                claim=self._context.claim,
                cancel=lambda prediction_id: self._spawn_cancel([prediction_id]),
                until=self._context.deadline,
                clock=self._clock,
            )
        )
        _background.add(looking)
        looking.add_done_callback(_background.discard)

        def created(future: asyncio.Future[Prediction]) -> None:
            if future.cancelled() or future.exception() is not None:
                return
            prediction = future.result()
            if prediction.status.is_terminal:
                return
            self._spawn_cancel([prediction.id])

        create.add_done_callback(created)

    def _spawn_cancel(self, ids: list[str]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(
            cancel_all(self._client, ids, clock=self._clock, within=self._cancel_timeout)
        )
        _background.add(task)
        task.add_done_callback(_background.discard)
        return task

    async def _cancel_open(self) -> None:
        if not self._open or self._context.handing_back():
            return  # shutting down: the next process resumes them
        ids = sorted(self._open)
        self._open.clear()
        await asyncio.shield(self._spawn_cancel(ids))
