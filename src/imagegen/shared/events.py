"""Job events between processes: Redis pub/sub, one channel per job.

Each process publishes every event of the jobs it runs to ``<prefix>events:<id>`` (a
publisher task, pipelined, in order) and subscribes, on one pub/sub connection, to the
channels of the jobs its own listeners follow. A message names the process it came from, so
a process never hears its own events twice. A state event carries the job as the transition
left it (JSON), so a listener elsewhere answers without reading the store; one that cannot be
read arrives without it, and the listener reads the store.

Pub/sub delivers at most once: a message sent while Redis is away is lost, and the listeners'
store re-reads (``jobs/follow.py``) catch up. When the connection breaks the reader reconnects
and subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from imagegen.jobs.events import JobEvent
from imagegen.models import Generation
from imagegen.shared.client import SharedRedis

log = logging.getLogger(__name__)

MAX_OUTGOING = 10_000  # events waiting to be published before new ones are dropped
RECONNECT_DELAY = 1.0
CLOSE_WAIT = 5.0
_GENERATION: TypeAdapter[Generation] = TypeAdapter(Generation)
POLL = 0.02  # longest a new subscription waits for the reader to send it


class RedisEventBus:
    """``EventBus`` over Redis pub/sub; ``start`` runs its tasks, ``aclose`` stops them."""

    def __init__(
        self,
        redis: SharedRedis,
        deliver: Callable[[JobEvent], None],
        *,
        reconnect_delay: float = RECONNECT_DELAY,
    ) -> None:
        self._redis = redis
        self._deliver = deliver
        self._origin = uuid.uuid4().hex
        self._reconnect_delay = reconnect_delay
        self._outgoing: asyncio.Queue[JobEvent] = asyncio.Queue(MAX_OUTGOING)
        self._listeners: dict[str, int] = {}  # channel -> listeners in this process
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._dropped = False
        self._failing = False
        self._lost = False
        self._closing = False

    def channel(self, generation_id: str) -> str:
        return self._redis.key("events", generation_id)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="redis-events-publish"),
            asyncio.create_task(self._receive_loop(), name="redis-events-receive"),
        ]

    async def aclose(self) -> None:
        # The flag too: a cancellation that races a read's own timeout can surface as a
        # TimeoutError (Python 3.11), which the receive loop would take for a lost connection.
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:  # bounded: a client that swallowed the cancellation must not hang us
            await asyncio.wait(self._tasks, timeout=CLOSE_WAIT)
        self._tasks = []

    # --- EventBus ---

    def publish(self, event: JobEvent) -> None:
        try:
            self._outgoing.put_nowait(event)
        except asyncio.QueueFull:
            if not self._dropped:
                log.warning("events: Redis is not keeping up; events are dropped")
                self._dropped = True

    def watch(self, generation_id: str) -> Awaitable[None]:
        channel = self.channel(generation_id)
        self._listeners[channel] = self._listeners.get(channel, 0) + 1
        confirmed = self._confirmed.get(channel)
        if confirmed is None:
            confirmed = self._confirmed[channel] = asyncio.get_running_loop().create_future()
            if self._lost:  # no confirmation is coming soon: the store re-reads cover it
                confirmed.set_result(None)
        return confirmed

    def unwatch(self, generation_id: str) -> None:
        channel = self.channel(generation_id)
        left = self._listeners.get(channel, 0) - 1
        if left > 0:
            self._listeners[channel] = left
            return
        self._listeners.pop(channel, None)
        self._confirm(channel)
        self._confirmed.pop(channel, None)

    # --- publishing ---

    async def _publish_loop(self) -> None:
        while not self._closing:
            batch = [await self._outgoing.get()]
            while not self._outgoing.empty() and len(batch) < 500:
                batch.append(self._outgoing.get_nowait())
            try:
                async with self._redis.client.pipeline(transaction=False) as pipe:
                    for event in batch:
                        pipe.publish(self.channel(event.generation_id), self._encode(event))
                    await pipe.execute()
                self._dropped = self._failing = False
            except Exception as exc:  # lost events are caught up by the store re-reads
                if not self._failing:  # once per outage, not once per event
                    log.warning("events: could not publish to Redis (%s)", type(exc).__name__)
                    self._failing = True

    def _encode(self, event: JobEvent) -> str:
        body: dict[str, Any] = {"o": self._origin, "k": event.kind}
        if event.progress is not None:
            body["p"] = event.progress
        if event.generation is not None:
            body["g"] = _GENERATION.dump_python(event.generation, mode="json")
        return json.dumps(body, separators=(",", ":"))

    # --- receiving ---

    async def _receive_loop(self) -> None:
        while not self._closing:
            try:
                await self._receive()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing:
                    return
                if not self._lost:  # once per outage
                    reason = type(exc).__name__
                    log.warning("events: Redis pub/sub connection lost (%s); reconnecting", reason)
                    self._lost = True
                await asyncio.sleep(self._reconnect_delay)

    async def _receive(self) -> None:
        """One connection's life. Only this task uses it: subscriptions change between reads
        (a read returns at once when a message comes, else after ``POLL`` seconds)."""
        pubsub = self._redis.client.pubsub()
        subscribed: set[str] = set()
        try:
            # A channel of its own keeps the connection subscribed while no job is followed.
            await pubsub.subscribe(self._redis.key("events", "_process", self._origin))
            if self._lost:
                log.warning("events: Redis pub/sub connection back")
                self._lost = False
            while not self._closing:
                subscribed = await self._sync(pubsub, subscribed)
                message = await pubsub.get_message(timeout=POLL)
                if message is not None:
                    self._handle(message)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _sync(self, pubsub: Any, subscribed: set[str]) -> set[str]:
        """Bring the connection's subscriptions in line with the followed jobs."""
        wanted = set(self._listeners)
        added, removed = wanted - subscribed, subscribed - wanted
        if added:
            await pubsub.subscribe(*added)
        if removed:
            await pubsub.unsubscribe(*removed)
        for channel in wanted - added:  # followed again before it was ever unsubscribed
            self._confirm(channel)
        return wanted

    def _confirm(self, channel: str) -> None:
        confirmed = self._confirmed.get(channel)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)

    def _handle(self, message: dict[str, Any]) -> None:
        channel = _text(message.get("channel"))
        kind = message.get("type")
        if kind == "subscribe":
            self._confirm(channel)
            return
        if kind != "message":
            return
        try:
            body = json.loads(message["data"])
        except (ValueError, TypeError):
            return
        if body.get("o") == self._origin or body.get("k") not in ("state", "progress"):
            return
        prefix = self._redis.key("events", "")
        generation_id = channel[len(prefix) :]
        self._deliver(JobEvent(body["k"], generation_id, _generation(body), body.get("p")))


def _generation(body: dict[str, Any]) -> Generation | None:
    """The job a state event carries; None (the listener reads the store) if it cannot be read."""
    if "g" not in body:
        return None
    try:
        return _GENERATION.validate_python(body["g"])
    except ValidationError:
        log.warning("events: a job in a Redis message could not be read")
        return None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
