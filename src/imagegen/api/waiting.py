"""Waiting on a job for a synchronous response, cancelling it if the client goes away.

The wait ends by the job's deadline (plus ``GRACE_SECONDS``): by then the provider's work has
been stopped, so a job still running is storing outputs it already paid for while the image
store is down (``jobs/outputs.py``). The answer is then ``StillStoring`` (504, naming the
generation to follow) while the job goes on in the background; it is not canceled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.requests import Request

from imagegen.errors import StillStoring
from imagegen.jobs.runner import JobRunner
from imagegen.jobs.work import BACKSTOP_SECONDS
from imagegen.models import Generation

# Past the deadline and the provider's backstop: time to store outputs and write the end state.
GRACE_SECONDS = BACKSTOP_SECONDS + 8.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def wait_for_job(
    runner: JobRunner,
    generation: Generation,
    request: Request,
    *,
    now: Callable[[], datetime] = _utcnow,
    grace: float | None = None,
) -> Generation:
    """Wait for the job; if the client disconnects first, cancel it (and its predictions).

    Once the body is read, the ASGI ``receive`` channel yields ``http.disconnect`` only when the
    client goes away, so one watching task per request costs nothing until that happens; the
    request's own task waits for the job (the watcher interrupts it if the client leaves).
    Raises ``StillStoring`` if the job outlives its deadline by ``grace`` seconds (default
    ``GRACE_SECONDS``).
    """
    timeout = None
    if generation.deadline_at is not None:
        left = max(0.0, (generation.deadline_at - now()).total_seconds())
        timeout = left + (GRACE_SECONDS if grace is None else grace)
    waiting = asyncio.current_task()
    assert waiting is not None
    watching = True
    gone = False

    def client_left(watcher: asyncio.Future[None]) -> None:
        nonlocal gone
        if watcher.cancelled():
            return
        watcher.exception()  # a receive that failed counts as the client gone too
        if watching:
            gone = True
            waiting.cancel()

    watcher = asyncio.ensure_future(_disconnected(request))
    watcher.add_done_callback(client_left)
    try:
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await runner.wait(generation.id)  # runner.wait shields the job itself
        except TimeoutError:
            if not deadline.expired():
                raise
            raise StillStoring(generation.id) from None  # the job runs on
        except asyncio.CancelledError:
            if not gone or waiting.uncancel() > 0:
                raise  # cancelled from elsewhere (the server is stopping)
        await runner.cancel(generation.id)
        return await runner.wait(generation.id)
    finally:
        watching = False
        watcher.cancel()


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
