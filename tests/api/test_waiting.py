"""``wait_for_job``: the job's end, the client leaving (the job is canceled), the deadline
passing (``StillStoring``, the job left running), and the server cancelling the request."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagegen.api.waiting import wait_for_job
from imagegen.errors import Canceled, StillStoring
from imagegen.models import Generation, GenerationRequest, JobStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def generation(status: JobStatus = JobStatus.QUEUED, seconds: float = 60) -> Generation:
    request = GenerationRequest(model="o/m", prompt="p", num_images=1, width=64, height=64)
    return Generation(
        id="gen_1",
        status=status,
        request=request,
        provider="fake",
        created_at=NOW,
        deadline_at=NOW + timedelta(seconds=seconds),
    )


class Runner:
    """A job that ends when ``end`` is set; ``cancel`` ends it canceled."""

    def __init__(self) -> None:
        self.end: asyncio.Future[Generation] = asyncio.get_running_loop().create_future()
        self.canceled: list[str] = []

    async def wait(self, generation_id: str) -> Generation:
        return await asyncio.shield(self.end)

    async def cancel(self, generation_id: str) -> Generation:
        self.canceled.append(generation_id)
        if not self.end.done():
            self.end.set_exception(Canceled("canceled"))
        return generation(JobStatus.CANCELED)


class Client:
    """The request's ``receive``: ``http.disconnect`` once ``leave`` is set."""

    def __init__(self) -> None:
        self.left = asyncio.Event()
        self.receiving = 0

    async def receive(self) -> dict[str, Any]:
        self.receiving += 1
        await self.left.wait()
        return {"type": "http.disconnect"}


async def test_the_job_ending_is_the_answer() -> None:
    runner, client = Runner(), Client()
    waiting = asyncio.ensure_future(wait_for_job(runner, generation(), client, now=lambda: NOW))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    runner.end.set_result(generation(JobStatus.SUCCEEDED))
    assert (await waiting).status is JobStatus.SUCCEEDED
    assert runner.canceled == []
    client.left.set()  # leaving afterwards touches nothing
    await asyncio.sleep(0.01)
    assert runner.canceled == []


async def test_the_client_leaving_cancels_the_job() -> None:
    runner, client = Runner(), Client()
    waiting = asyncio.ensure_future(wait_for_job(runner, generation(), client, now=lambda: NOW))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert client.receiving == 1
    client.left.set()
    with pytest.raises(Canceled):
        await waiting
    assert runner.canceled == ["gen_1"]


async def test_past_the_deadline_the_job_is_left_running() -> None:
    runner, client = Runner(), Client()
    with pytest.raises(StillStoring):
        await wait_for_job(
            runner,  # type: ignore[arg-type]
            generation(seconds=0.01),
            client,  # type: ignore[arg-type]
            now=lambda: NOW,
            grace=0.02,
        )
    assert runner.canceled == []
    assert not runner.end.done()


async def test_the_server_cancelling_the_request_cancels_only_the_wait() -> None:
    runner, client = Runner(), Client()
    waiting = asyncio.ensure_future(wait_for_job(runner, generation(), client, now=lambda: NOW))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert runner.canceled == []
    assert not runner.end.done()


async def test_the_job_ending_as_the_client_leaves_is_still_the_answer() -> None:
    runner, client = Runner(), Client()
    waiting = asyncio.ensure_future(wait_for_job(runner, generation(), client, now=lambda: NOW))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    runner.end.set_result(generation(JobStatus.SUCCEEDED))
    client.left.set()
    assert (await waiting).status is JobStatus.SUCCEEDED
