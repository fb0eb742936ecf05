"""Waiting on a job for a synchronous response, cancelling it if the client goes away."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import Request

from imagegen.jobs.runner import JobRunner
from imagegen.models import Generation


async def wait_for_job(runner: JobRunner, generation_id: str, request: Request) -> Generation:
    """Wait for the job; if the client disconnects first, cancel it (and its predictions).

    Once the body is read, the ASGI ``receive`` channel yields ``http.disconnect`` only when the
    client goes away, so one waiting task per request costs nothing until that happens.
    """
    job = asyncio.ensure_future(runner.wait(generation_id))
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if job not in done:
            await runner.cancel(generation_id)
        return await job
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
