"""The job runner over the real store: every state transition, cancel in each state, lost races."""

import asyncio
import contextlib

import pytest
from tests.fakes.scripted_provider import FakeIngestor, ScriptedProvider
from tests.jobs.conftest import REQUEST, runner_for

from imagegen.errors import (
    Canceled,
    DeadlineExceeded,
    ImageFetchError,
    InvalidTransition,
    PredictionFailed,
    UpstreamHTTPError,
)
from imagegen.models import JobStatus, PredictionRecord, ProviderImage, ProviderResult


async def test_success_walks_running_succeeded_and_records_predictions(store):
    provider = ScriptedProvider()
    runner = runner_for(store, provider)
    job = await runner.submit(REQUEST)
    # A slot was free: the job was written running, its start time set, in one write.
    assert job.status is JobStatus.RUNNING
    assert job.started_at is not None
    done = await runner.wait(job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.started_at is not None
    assert done.completed_at is not None
    assert len(done.images) == 2
    assert [p.prediction_id for p in done.predictions] == ["p1"]
    assert done.provider_urls[0].startswith("https://replicate.delivery/")
    assert runner.in_flight() == 0


async def test_listeners_hear_every_transition_and_progress_in_order(store, gated):
    runner = runner_for(store, gated)
    job = await runner.submit(REQUEST)
    heard = []
    with runner.events.subscribe(job.id) as listener:
        await gated.started.wait()
        assert runner.progress(job.id) == 0.5
        gated.release.set()
        await runner.wait(job.id)
        while (event := await listener.next(0.01)) is not None:
            heard.append(event.generation.status if event.generation else event.progress)
    assert heard == [JobStatus.RUNNING, 0.5, JobStatus.SUCCEEDED]
    assert runner.progress(job.id) is None  # forgotten once the job ended


async def test_provider_error_marks_failed_and_reraises_the_same_error(store):
    error = UpstreamHTTPError(
        "ReplicateError Details:\nstatus: 402", provider="replicate", status=402
    )
    runner = runner_for(store, ScriptedProvider(error=error))
    job = await runner.submit(REQUEST)
    with pytest.raises(UpstreamHTTPError) as info:
        await runner.wait(job.id)
    assert info.value is error
    row = await store.get(job.id)
    assert row.status is JobStatus.FAILED
    assert row.error == str(error)
    assert row.error_code == "upstream_http_402"


async def test_deadline_cancels_the_provider_and_fails_with_deadline_exceeded(store, monkeypatch):
    monkeypatch.setattr("imagegen.jobs.work.BACKSTOP_SECONDS", 0.0)
    provider = ScriptedProvider(delay=5)
    runner = runner_for(store, provider, timeout=0.2)
    job = await runner.submit(REQUEST)
    with pytest.raises(DeadlineExceeded):
        await runner.wait(job.id)
    assert provider.canceled == ["p1"]
    assert (await store.get(job.id)).status is JobStatus.FAILED
    assert (await store.get(job.id)).error_code == "deadline_exceeded"


# --- cancel in each state ---


async def test_cancel_while_running_marks_canceled_and_cancels_upstream(store, gated):
    runner = runner_for(store, gated)
    job = await runner.submit(REQUEST)
    await gated.started.wait()
    row = await runner.cancel(job.id)
    assert row.status is JobStatus.CANCELED
    assert gated.canceled == ["p1"]
    with pytest.raises(Canceled):  # a finished job's waiter gets the error it ended with
        await runner.wait(job.id)


async def test_cancel_while_queued_for_a_slot_never_runs_it(store, gated):
    from imagegen.jobs.limits import Limits, ProviderLimits

    runner = runner_for(store, gated, limits=ProviderLimits({"gated": Limits(max_concurrency=1)}))
    first = await runner.submit(REQUEST)
    await gated.started.wait()
    second = await runner.submit(REQUEST)
    await asyncio.sleep(0.05)
    assert (await store.get(second.id)).status is JobStatus.QUEUED
    row = await runner.cancel(second.id)
    assert row.status is JobStatus.CANCELED
    assert row.started_at is None
    gated.release.set()
    assert (await runner.wait(first.id)).status is JobStatus.SUCCEEDED
    assert gated.created == ["p1"]  # the canceled job created nothing


async def test_a_waiter_sees_canceled_when_another_caller_cancels(store, gated):
    runner = runner_for(store, gated)
    job = await runner.submit(REQUEST)
    waiter = asyncio.ensure_future(runner.wait(job.id))
    await gated.started.wait()
    await runner.cancel(job.id)
    with pytest.raises(Canceled):
        await waiter


@pytest.mark.parametrize("outcome", ["succeeded", "failed", "canceled"])
async def test_cancel_of_a_finished_job_changes_nothing(store, outcome):
    error = PredictionFailed("boom", provider="scripted") if outcome == "failed" else None
    provider = ScriptedProvider(error=error, delay=5 if outcome == "canceled" else 0)
    runner = runner_for(store, provider)
    job = await runner.submit(REQUEST)
    if outcome == "canceled":
        await provider.started.wait()
        await runner.cancel(job.id)
    with pytest.raises(Exception) if outcome != "succeeded" else contextlib.nullcontext():
        await runner.wait(job.id)
    before = await store.get(job.id)
    assert before.status == outcome
    assert await runner.cancel(job.id) == before


async def test_cancel_of_a_job_another_instance_runs_marks_it_and_stops_its_predictions(
    store, gated
):
    runner = runner_for(store, gated)
    job = await store.create(REQUEST, provider="gated", lease_owner="instance-b")
    await store.mark_running(job.id)
    await store.add_prediction(job.id, PredictionRecord("elsewhere-1", {}, 2))
    row = await runner.cancel(job.id)
    assert row.status is JobStatus.CANCELED
    assert gated.canceled == ["elsewhere-1"]


# --- lost races: another writer ends the job first ---


async def test_a_job_canceled_by_another_replica_settles_canceled_when_it_completes(store, gated):
    runner = runner_for(store, gated)
    job = await runner.submit(REQUEST)
    await gated.started.wait()
    await store.mark_canceled(job.id, reason="canceled on replica b")  # another replica
    gated.release.set()
    with pytest.raises(Canceled, match="replica b"):
        await runner.wait(job.id)
    assert (await store.get(job.id)).images == ()


async def test_a_failure_after_a_cancel_elsewhere_reports_the_cancel(store, gated):
    gated.error = PredictionFailed("Replicate: the prediction was canceled", provider="gated")
    runner = runner_for(store, gated)
    job = await runner.submit(REQUEST)
    await gated.started.wait()
    await store.mark_canceled(job.id, reason="user asked")
    gated.release.set()
    with pytest.raises(Canceled):
        await runner.wait(job.id)


async def test_cancel_racing_completion_returns_the_completed_job(store, gated):
    runner = runner_for(store, gated)
    job = await runner.submit(REQUEST)
    await gated.started.wait()
    gated.release.set()
    done = await runner.wait(job.id)
    # The cancel lost: the job had already succeeded; it is returned unchanged, not an error.
    assert (await runner.cancel(job.id)).status is JobStatus.SUCCEEDED
    with pytest.raises(InvalidTransition) as lost:
        await store.mark_canceled(job.id, reason="late")
    assert lost.value.current == done


async def test_wait_follows_a_job_another_instance_runs(store, monkeypatch):
    monkeypatch.setattr("imagegen.jobs.runner.WATCH_INTERVAL", 0.02)
    runner = runner_for(store, ScriptedProvider())
    job = await store.create(REQUEST, provider="scripted", lease_owner="instance-b")
    waiter = asyncio.ensure_future(runner.wait(job.id))
    await store.mark_running(job.id)
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await store.mark_failed(job.id, error="boom", error_code="prediction_failed")
    with pytest.raises(PredictionFailed, match="boom"):
        await waiter


# --- results ---


async def test_dropped_images_are_reported_not_hidden(store):
    runner = runner_for(store, ScriptedProvider(drop=1))
    done = await runner.wait((await runner.submit(REQUEST)).id)
    assert len(done.images) == 1
    assert done.images_missing == 1


async def test_one_failed_download_keeps_the_others_and_counts_it_missing(store):
    fail = {"https://replicate.delivery/x/cat-0.png"}
    ingestor = FakeIngestor(fail_urls=fail, error=ImageFetchError("gone", provider="imagegen"))
    runner = runner_for(store, ScriptedProvider(), ingestor=ingestor)
    done = await runner.wait((await runner.submit(REQUEST)).id)
    assert len(done.images) == 1
    assert done.images_missing == 1


async def test_all_downloads_failing_fails_the_job_with_the_fetch_error(store):
    fail = {f"https://replicate.delivery/x/cat-{i}.png" for i in range(2)}
    ingestor = FakeIngestor(fail_urls=fail, error=ImageFetchError("gone", provider="imagegen"))
    runner = runner_for(store, ScriptedProvider(), ingestor=ingestor)
    job = await runner.submit(REQUEST)
    with pytest.raises(ImageFetchError):
        await runner.wait(job.id)
    assert (await store.get(job.id)).status is JobStatus.FAILED


async def test_provider_urls_mode_stores_nothing(store):
    runner = runner_for(store, ScriptedProvider(), ingestor=None)
    done = await runner.wait((await runner.submit(REQUEST)).id)
    assert done.images == ()
    assert len(done.provider_urls) == 2


class RevisingProvider(ScriptedProvider):
    """Two outputs with the same bytes (one URL), each with its own revised prompt."""

    async def generate(self, request, context):
        url = "https://upstream.test/same.png"
        images = (
            ProviderImage(url, revised_prompt="first"),
            ProviderImage(url, revised_prompt=None),
        )
        return ProviderResult(images=images, requested=2)


async def test_revised_prompts_stay_with_their_output_when_bytes_are_shared(store):
    runner = runner_for(store, RevisingProvider())
    done = await runner.wait((await runner.submit(REQUEST)).id)
    assert [image.key for image in done.images] == [done.images[0].key] * 2
    assert [image.revised_prompt for image in done.images] == ["first", None]
    assert (await store.get(done.id)).images == done.images


async def test_aclose_leaves_running_jobs_unmarked_for_a_later_resume(store, gated):
    runner = runner_for(store, gated)
    job = await runner.submit(REQUEST)
    await gated.started.wait()
    await runner.aclose()
    row = await store.get(job.id)
    assert row.status is JobStatus.RUNNING
    assert [p.prediction_id for p in row.predictions] == ["p1"]
