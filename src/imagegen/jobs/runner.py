"""The job runner: runs each generation as an in-process task with a persisted state machine.

queued -> running -> succeeded | failed | canceled. A synchronous request is a job whose HTTP
response waits for it; every create endpoint goes through ``submit``. The provider's prediction
ids are persisted (``on_prediction``) before the provider waits on them, so ``start`` can
resume what a crashed process left running (``recovery.py``).

The pieces: ``limits.py`` (per-provider slots, queue bound, create rate), ``work.py`` (one
job's run and how each outcome is written), ``lifecycle.py`` (transitions, their webhook
messages and events), ``events.py`` (listeners), ``webhooks/`` (the outbox worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from imagegen.catalog import Catalog, Route
from imagegen.errors import (
    Canceled,
    IdempotencyKeyInUse,
    ImagegenError,
    InvalidTransition,
    LeaseLost,
    StoreBusy,
)
from imagegen.jobs.events import JobEvents
from imagegen.jobs.fencing import LeaseFence
from imagegen.jobs.idempotency import IdempotencyKeys, matching
from imagegen.jobs.lifecycle import Transitions
from imagegen.jobs.limits import ProviderLimits, QueueTicket
from imagegen.jobs.observe import JobObserver
from imagegen.jobs.outcome import result_of
from imagegen.jobs.protocols import GenerationStore, Idempotency, Ingestor
from imagegen.jobs.records import WebhookEvent, WebhookTarget
from imagegen.jobs.recovery import CLAIM_BATCH, Recovery
from imagegen.jobs.webhooks.messages import WebhookMessages
from imagegen.jobs.work import STORE_RETRY_DELAYS, JobWork, Plan
from imagegen.models import Generation, GenerationRequest, JobStatus, PendingCreate

log = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0  # seconds between store reads while waiting on a job run elsewhere


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _asks_for_start(webhook: WebhookTarget | None) -> bool:
    return webhook is not None and WebhookEvent.START in webhook.events


def _first_creates(route: Route, request: GenerationRequest) -> tuple[PendingCreate, ...]:
    """The creates the route's provider sends first for ``request``, as ``JobWork`` runs it
    (under the upstream's name for the model), when it knows them now."""
    if request.model != route.upstream_model:
        request = replace(request, model=route.upstream_model)
    return tuple(route.provider.first_creates(request))


class JobRunner:
    """Creates, runs, waits on, cancels and recovers generation jobs.

    Without ``start`` it runs what it is given; ``start`` adopts unfinished jobs and starts the
    background work (lease renewal, ``background`` such as the webhook worker); ``aclose`` stops
    everything without marking running jobs, so that a restart resumes them.
    """

    def __init__(
        self,
        *,
        store: GenerationStore,
        catalog: Catalog,
        ingestor: Ingestor | None,
        timeout: float,
        idempotency_ttl: float = 86400.0,
        now: Callable[[], datetime] = _utcnow,
        limits: ProviderLimits | None = None,
        events: JobEvents | None = None,
        messages: WebhookMessages | None = None,
        wake_webhooks: Callable[[], None] = lambda: None,
        owner: str | None = None,
        lease_seconds: float = 60.0,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        store_retry_delays: Sequence[float] = STORE_RETRY_DELAYS,
        observer: JobObserver | None = None,
        share_queue: bool = False,
        claim_interval: float | None = None,
    ) -> None:
        """``share_queue``: the database is shared with other instances; a job submitted when
        this one has no room is left unleased, for whichever instance has room to claim it
        (every ``claim_interval`` seconds, and whenever one of its jobs ends)."""
        self._store = store
        self._share_queue = share_queue
        self._catalog = catalog
        self._timeout = timeout
        self._keys = IdempotencyKeys(store, ttl=idempotency_ttl, now=now)
        self._now = now
        self._limits = limits or ProviderLimits()
        self.events = events or JobEvents()
        self._owner = owner or socket.gethostname()
        self._background = background
        self._tasks: dict[str, asyncio.Task[Generation]] = {}
        self._daemons: list[asyncio.Task[None]] = []
        self._closing = False
        self._transitions = Transitions(
            store,
            self.events,
            messages or WebhookMessages(),
            wake_webhooks=wake_webhooks,
            holder=self._owner,
        )
        self._fence = LeaseFence(store, holder=self._owner, lease_seconds=lease_seconds, clock=now)
        self._work = JobWork(
            store=store,
            transitions=self._transitions,
            events=self.events,
            limits=self._limits,
            ingestor=ingestor,
            closing=lambda: self._closing,
            retry_delays=store_retry_delays,
            observer=observer,
            fence=self._fence,
            clock=now,
        )
        self._recovery = Recovery(
            store,
            owner=self._owner,
            lease_seconds=lease_seconds,
            clock=now,
            adopt=self.adopt,
            running=self._tasks.keys,
            lose=self._lose,
            # Alone on its database, an instance takes every job and queues in memory.
            room=(lambda: self._limits.room(CLAIM_BATCH)) if share_queue else lambda: CLAIM_BATCH,
            claim_interval=claim_interval if share_queue else None,
        )

    async def start(self) -> int:
        """Adopt unfinished jobs (returns how many), then start the background work."""
        adopted = await self._recovery.at_start()
        for daemon in (self._recovery.keep, self._recovery.share, *self._background):
            self._daemons.append(asyncio.create_task(daemon(), name=daemon.__qualname__))
        return adopted

    async def submit(
        self,
        request: GenerationRequest,
        *,
        deadline_seconds: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency: Idempotency | None = None,
        webhook: WebhookTarget | None = None,
        owner: str | None = None,
        gate: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> Generation:
        """Persist a queued job and start running it; returns at once.

        ``owner`` is the id of the API key creating it. ``gate`` is entered after an
        idempotent replay is ruled out and held while the job is written: a per-key limit
        refuses the job there (raising), before anything is stored or sent upstream.

        With ``idempotency``, a job already created under the same key is returned instead (the
        caller waits on it like any other); the same key with another request raises
        ``IdempotencyConflict``. Keys older than ``idempotency_ttl`` are released and reused.
        A provider whose queue is full refuses the job with ``QueueFull``, storing nothing.
        """
        route = self._catalog.resolve(request.model)
        if idempotency is not None:
            existing = await self._keys.existing(idempotency)
            if existing is not None:
                return existing
        create = partial(
            self._create, request, route, deadline_seconds, metadata, idempotency, webhook, owner
        )
        if gate is None:
            return await create()
        async with gate():
            return await create()

    async def _create(
        self,
        request: GenerationRequest,
        route: Route,
        deadline_seconds: float | None,
        metadata: Mapping[str, Any] | None,
        idempotency: Idempotency | None,
        webhook: WebhookTarget | None,
        owner: str | None,
    ) -> Generation:
        limiter = self._limits(route.provider.name)
        if self._share_queue and limiter.room(1) <= 0:
            return await self._hand_off(
                request, route, deadline_seconds, metadata, idempotency, webhook, owner
            )
        ticket = limiter.admit()
        seconds = deadline_seconds if deadline_seconds is not None else self._timeout
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            # A slot free now: the job is written running, one write less, with the creates
            # its provider sends first (their create tokens free now, and taken), one more.
            # One that asked for the start webhook is written queued, its start (and message)
            # written on its own.
            started = not _asks_for_start(webhook) and await limiter.take_free(ticket)
            creates = _first_creates(route, request) if started else ()
            if creates and not limiter.take_creates(len(creates)):
                creates = ()  # they would wait for their turn: each is written when it comes
            written_at = asyncio.get_running_loop().time()
            generation = await self._insert(
                request,
                route,
                seconds,
                metadata,
                idempotency,
                webhook,
                owner,
                leased=True,
                started=started,
                creates=creates,
            )
        except IdempotencyKeyInUse as exc:  # another request with this key won the race
            ticket.leave()
            assert idempotency is not None
            return matching(exc.existing, idempotency)
        except BaseException:
            ticket.leave()
            raise
        self._transitions.created(generation)
        plan = Plan(generation, route, deadline, ticket, creates=creates, written_at=written_at)
        self._spawn(generation.id, self._work.run(plan), ticket)
        return generation

    async def _insert(
        self,
        request: GenerationRequest,
        route: Route,
        seconds: float,
        metadata: Mapping[str, Any] | None,
        idempotency: Idempotency | None,
        webhook: WebhookTarget | None,
        owner: str | None,
        *,
        leased: bool,
        started: bool = False,
        creates: Sequence[PendingCreate] = (),
    ) -> Generation:
        """The job's row: ``leased`` by this instance (it runs the job), or free for whichever
        instance claims it; ``started``: running already (it holds a slot), with ``creates``
        pending."""
        lease: dict[str, Any] = (
            {"lease_owner": self._owner, "lease_expires_at": self._recovery.lease_expires_at}
            if leased
            else {}
        )
        return await self._store.create(
            request,
            provider=route.provider.name,
            deadline_at=self._now() + timedelta(seconds=seconds),
            metadata=metadata,
            idempotency_key=idempotency.key if idempotency else None,
            request_hash=idempotency.request_hash if idempotency else None,
            webhook_url=webhook.url if webhook else None,
            webhook_events=[event.value for event in webhook.events] if webhook else None,
            owner=owner,
            started=started,
            creates=creates,
            **lease,
        )

    async def _hand_off(
        self,
        request: GenerationRequest,
        route: Route,
        deadline_seconds: float | None,
        metadata: Mapping[str, Any] | None,
        idempotency: Idempotency | None,
        webhook: WebhookTarget | None,
        owner: str | None,
    ) -> Generation:
        """No room here: write the job unleased; whichever instance has room claims it. The
        jobs waiting so are bounded like a process's queue (``QueueFull`` past ``max_queue``)."""
        limiter = self._limits(route.provider.name)
        queue = limiter.limits.max_queue
        limiter.refuse_if_full(await self._store.waiting(route.provider.name, limit=queue))
        seconds = deadline_seconds if deadline_seconds is not None else self._timeout
        try:
            generation = await self._insert(
                request, route, seconds, metadata, idempotency, webhook, owner, leased=False
            )
        except IdempotencyKeyInUse as exc:
            assert idempotency is not None
            return matching(exc.existing, idempotency)
        self._transitions.created(generation)
        return generation

    def adopt(self, generation: Generation) -> None:
        """Run a job left unfinished by a stopped process (the caller holds its lease)."""
        if generation.id in self._tasks:
            return
        try:
            route = self._catalog.resolve(generation.request.model)
        except ImagegenError as exc:
            self._spawn(generation.id, self._work.fail(generation.id, exc))
            return
        remaining = self._timeout
        if generation.deadline_at is not None:
            remaining = (generation.deadline_at - self._now()).total_seconds()
        if remaining <= 0:
            self._spawn(generation.id, self._work.expire(generation, route))
            return
        plan = Plan(
            generation,
            route,
            asyncio.get_running_loop().time() + remaining,
            self._limits(route.provider.name).admit(force=True),
            started=generation.status is JobStatus.RUNNING,
        )
        self._spawn(generation.id, self._work.run(plan), plan.ticket)

    async def wait(self, generation_id: str) -> Generation:
        """Wait for a job to end; raises the job's error if it failed or was canceled.

        A job this process does not run (another replica's) is watched through the store.
        """
        while True:
            while (task := self._tasks.get(generation_id)) is None:
                with self.events.subscribe(generation_id) as listener:
                    await listener.ready()
                    generation = await self._read_unless_busy(generation_id)
                    if generation is not None and generation.status.is_terminal:
                        return result_of(generation)
                    await listener.next(WATCH_INTERVAL)  # a change, or time to look again
            try:
                return await asyncio.shield(task)
            except (asyncio.CancelledError, LeaseLost):
                if not (task.done() and self._left(task)):
                    raise  # the caller was cancelled, or the runner is closing
            # another instance adopted the job: follow it there

    async def _read_unless_busy(self, generation_id: str) -> Generation | None:
        """The job as stored; None while the database is at capacity. The job is admitted and
        may be paid for already: a waiter that answered 503 now would have its client send it
        again, and pay again, so it looks again later (its caller bounds the wait)."""
        try:
            return await self._store.get(generation_id)
        except StoreBusy as exc:
            log.info("generation %s: %s; looking again", generation_id, exc)
            return None

    def _left(self, task: asyncio.Task[Generation]) -> bool:
        """``task`` stopped because another instance holds its job now."""
        if self._closing:
            return False
        return task.cancelled() or isinstance(task.exception(), LeaseLost)

    def _lose(self, generation_ids: Collection[str]) -> None:
        """Another instance holds these jobs now: stop their tasks, canceling nothing upstream."""
        for generation_id in generation_ids:
            self._fence.lose(generation_id)
            task = self._tasks.get(generation_id)
            if task is not None:
                task.cancel()

    async def cancel(self, generation_id: str) -> Generation:
        """Cancel a job and its upstream predictions; a finished job is returned unchanged."""
        task = self._tasks.get(generation_id)
        if task is None:
            return await self._cancel_elsewhere(generation_id)
        task.cancel()
        with contextlib.suppress(Canceled, ImagegenError):
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # the caller was cancelled, not the job
        if task.done() and self._left(task):  # another instance runs it now
            return await self._cancel_elsewhere(generation_id)
        return await self._store.get(generation_id)

    async def _cancel_elsewhere(self, generation_id: str) -> Generation:
        """Cancel a job no task of ours runs: mark it, then stop its predictions upstream. The
        instance running it (if any) then sees them end and settles on ``canceled``."""
        generation = await self._store.get(generation_id)
        if generation.status.is_terminal:
            return generation
        try:
            generation = await self._transitions.canceled(
                generation_id, reason="canceled", fenced=False
            )
        except InvalidTransition as lost:
            return lost.current
        with contextlib.suppress(ImagegenError):
            route = self._catalog.resolve(generation.request.model)
            await route.provider.cancel(generation.predictions)
        return generation

    def progress(self, generation_id: str) -> float | None:
        return self._work.progress.get(generation_id)

    def in_flight(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        """Hand running jobs back: stop them without marking them or canceling anything
        upstream, and release their leases, so that a restart (or another replica) resumes them
        at once and pays for nothing twice."""
        self._closing = True
        held = list(self._tasks)
        tasks: list[asyncio.Task[Any]] = [*self._tasks.values(), *self._daemons]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if held:
            try:
                released = await self._store.release_leases(self._owner, held)
            except Exception:  # their leases run out instead
                log.exception("could not release the leases of %d jobs", len(held))
            else:
                log.info("handed %d unfinished jobs back", released)

    def _spawn(
        self,
        generation_id: str,
        work: Coroutine[Any, Any, Generation],
        ticket: QueueTicket | None = None,
    ) -> None:
        """Run ``work`` as the job's task. Its ``ticket`` (its place in the queue, and a slot it
        took but never used) is given up when the task ends, however it ends: a task cancelled
        before its first step runs none of its own code."""
        task = asyncio.get_running_loop().create_task(work, name=f"generation-{generation_id}")
        self._fence.lost.discard(generation_id)
        self._tasks[generation_id] = task
        task.add_done_callback(functools.partial(self._finished, generation_id))
        if ticket is not None:
            task.add_done_callback(lambda _: ticket.leave())

    def _finished(self, generation_id: str, task: asyncio.Task[Generation]) -> None:
        if self._tasks.get(generation_id) is task:
            del self._tasks[generation_id]
        if self._share_queue:
            self._recovery.wake()  # a slot came free: take a job waiting in the database
        if not task.cancelled():
            task.exception()  # retrieved here so async jobs never log "never retrieved"
