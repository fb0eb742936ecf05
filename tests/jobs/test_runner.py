import asyncio

import pytest
from tests.fakes.memory_store import MemoryStore
from tests.fakes.scripted_provider import FakeIngestor, ScriptedProvider

from imagegen.catalog import Catalog
from imagegen.errors import Canceled, DeadlineExceeded, ImageFetchError, UpstreamHTTPError
from imagegen.jobs.runner import JobRunner
from imagegen.models import GenerationRequest, JobStatus

REQUEST = GenerationRequest(model="owner/model", prompt="cat", num_images=2, width=512, height=512)


def make_runner(provider: ScriptedProvider, *, ingestor=None, timeout=5.0, provider_urls=False):
    store = MemoryStore()
    runner = JobRunner(
        store=store,
        catalog=Catalog(default=provider),
        ingestor=None if provider_urls else (ingestor or FakeIngestor()),
        timeout=timeout,
    )
    return runner, store


async def test_success_walks_queued_running_succeeded_and_records_predictions():
    provider = ScriptedProvider()
    runner, _store = make_runner(provider)
    job = await runner.submit(REQUEST)
    assert job.status is JobStatus.QUEUED
    done = await runner.wait(job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.started_at is not None
    assert done.completed_at is not None
    assert len(done.images) == 2
    assert [p.prediction_id for p in done.predictions] == ["p1"]
    assert done.provider_urls[0].startswith("https://replicate.delivery/")
    assert runner.in_flight() == 0


async def test_provider_error_marks_failed_and_reraises_the_same_error():
    error = UpstreamHTTPError(
        "ReplicateError Details:\nstatus: 402", provider="replicate", status=402
    )
    runner, store = make_runner(ScriptedProvider(error=error))
    job = await runner.submit(REQUEST)
    with pytest.raises(UpstreamHTTPError) as info:
        await runner.wait(job.id)
    assert info.value is error
    row = await store.get(job.id)
    assert row.status is JobStatus.FAILED
    assert row.error == str(error)
    assert row.error_code == "upstream_http_402"


async def test_deadline_cancels_the_provider_and_fails_with_deadline_exceeded(monkeypatch):
    monkeypatch.setattr("imagegen.jobs.runner._BACKSTOP_SECONDS", 0.0)
    provider = ScriptedProvider(delay=5)
    runner, store = make_runner(provider, timeout=0.2)
    job = await runner.submit(REQUEST)
    with pytest.raises(DeadlineExceeded):
        await runner.wait(job.id)
    assert provider.canceled == ["p1"]
    assert (await store.get(job.id)).status is JobStatus.FAILED
    assert (await store.get(job.id)).error_code == "deadline_exceeded"


async def test_cancel_while_running_marks_canceled_and_cancels_upstream():
    provider = ScriptedProvider(delay=5)
    runner, _store = make_runner(provider)
    job = await runner.submit(REQUEST)
    await provider.started.wait()
    assert runner.progress(job.id) == 0.5
    row = await runner.cancel(job.id)
    assert row.status is JobStatus.CANCELED
    assert provider.canceled == ["p1"]
    with pytest.raises(Canceled):  # a finished job's waiter gets the error it ended with
        await runner.wait(job.id)


async def test_a_waiter_sees_canceled_when_another_caller_cancels():
    provider = ScriptedProvider(delay=5)
    runner, _ = make_runner(provider)
    job = await runner.submit(REQUEST)
    waiter = asyncio.ensure_future(runner.wait(job.id))
    await provider.started.wait()
    await runner.cancel(job.id)
    with pytest.raises(Canceled):
        await waiter


async def test_cancel_of_a_finished_job_changes_nothing():
    runner, _ = make_runner(ScriptedProvider())
    job = await runner.submit(REQUEST)
    await runner.wait(job.id)
    assert (await runner.cancel(job.id)).status is JobStatus.SUCCEEDED


async def test_dropped_images_are_reported_not_hidden():
    runner, _ = make_runner(ScriptedProvider(drop=1))
    done = await runner.wait((await runner.submit(REQUEST)).id)
    assert len(done.images) == 1
    assert done.images_missing == 1


async def test_one_failed_download_keeps_the_others_and_counts_it_missing():
    fail = {"https://replicate.delivery/x/cat-0.png"}
    ingestor = FakeIngestor(fail_urls=fail, error=ImageFetchError("gone", provider="imagegen"))
    runner, _ = make_runner(ScriptedProvider(), ingestor=ingestor)
    done = await runner.wait((await runner.submit(REQUEST)).id)
    assert len(done.images) == 1
    assert done.images_missing == 1


async def test_all_downloads_failing_fails_the_job_with_the_fetch_error():
    fail = {f"https://replicate.delivery/x/cat-{i}.png" for i in range(2)}
    ingestor = FakeIngestor(fail_urls=fail, error=ImageFetchError("gone", provider="imagegen"))
    runner, store = make_runner(ScriptedProvider(), ingestor=ingestor)
    job = await runner.submit(REQUEST)
    with pytest.raises(ImageFetchError):
        await runner.wait(job.id)
    assert (await store.get(job.id)).status is JobStatus.FAILED


async def test_provider_urls_mode_stores_nothing():
    runner, _ = make_runner(ScriptedProvider(), provider_urls=True)
    done = await runner.wait((await runner.submit(REQUEST)).id)
    assert done.images == ()
    assert len(done.provider_urls) == 2


async def test_aclose_leaves_running_jobs_unmarked_for_a_later_resume():
    provider = ScriptedProvider(delay=5)
    runner, store = make_runner(provider)
    job = await runner.submit(REQUEST)
    await provider.started.wait()
    await runner.aclose()
    assert (await store.get(job.id)).status is JobStatus.RUNNING
