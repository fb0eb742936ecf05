"""Crash recovery: what a restarted (or surviving) instance does with unfinished jobs."""

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from tests.jobs.conftest import REQUEST, runner_for

from imagegen.jobs.recovery import EMPTY_CLAIM_PAUSE, Recovery
from imagegen.models import JobStatus, PendingCreate, PredictionRecord


def soon(seconds: float = 30) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def unfinished(
    store, status, *, owner="instance-a", predictions=(), deadline=None, lease=None
):
    job = await store.create(
        REQUEST,
        provider="gated",
        deadline_at=deadline or soon(),
        lease_owner=owner,
        lease_expires_at=lease or soon(),
    )
    if status is JobStatus.RUNNING:
        await store.mark_running(job.id)
    for prediction_id in predictions:
        await store.add_prediction(job.id, PredictionRecord(prediction_id, {"prompt": "cat"}, 2))
    return await store.get(job.id)


async def test_running_jobs_with_predictions_are_resumed_without_a_new_create(
    store, gated, runners
):
    job = await unfinished(store, JobStatus.RUNNING, predictions=["old-1"])
    gated.release.set()
    runner = runner_for(store, gated)
    runners.append(runner)
    assert await runner.start() == 1
    done = await runner.wait(job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert (gated.resumed, gated.created) == (["old-1"], [])
    assert len(done.images) == 2
    assert done.started_at == job.started_at


async def test_queued_jobs_run_and_running_jobs_without_predictions_run_again(
    store, gated, runners
):
    queued = await unfinished(store, JobStatus.QUEUED)
    orphan = await unfinished(store, JobStatus.RUNNING)
    gated.release.set()
    runner = runner_for(store, gated)
    runners.append(runner)
    assert await runner.start() == 2
    for job in (queued, orphan):
        assert (await runner.wait(job.id)).status is JobStatus.SUCCEEDED
    assert len(gated.created) == 2
    assert (await store.get(orphan.id)).started_at == orphan.started_at  # not "started" twice


async def test_jobs_past_their_deadline_are_canceled_upstream_and_failed(store, gated, runners):
    past = datetime.now(UTC) - timedelta(seconds=1)
    job = await unfinished(store, JobStatus.RUNNING, predictions=["old-1", "old-2"], deadline=past)
    runner = runner_for(store, gated)
    runners.append(runner)
    await runner.start()
    await asyncio.wait_for(_terminal(store, job.id), 5)
    row = await store.get(job.id)
    assert (row.status, row.error_code) == (JobStatus.FAILED, "deadline_exceeded")
    assert gated.canceled == ["old-1", "old-2"]
    assert gated.resumed == gated.created == []


async def test_a_job_another_live_instance_holds_is_left_alone_until_its_lease_runs_out(
    store, gated, runners
):
    job = await unfinished(
        store, JobStatus.RUNNING, owner="instance-b", predictions=["b-1"], lease=soon(0.3)
    )
    gated.release.set()
    runner = runner_for(store, gated, lease_seconds=1.5)  # renews and sweeps every 0.5 s
    runners.append(runner)
    assert await runner.start() == 0
    assert gated.resumed == []
    done = await asyncio.wait_for(runner.wait(job.id), 5)  # adopted by the sweep, then resumed
    assert done.status is JobStatus.SUCCEEDED
    assert gated.resumed == ["b-1"]


async def test_two_instances_recovering_at_once_adopt_each_job_once(store, gated, runners):
    jobs = [
        await unfinished(
            store, JobStatus.RUNNING, owner="dead", predictions=[f"d-{i}"], lease=soon(-1)
        )
        for i in range(6)
    ]
    gated.release.set()
    first, second = runner_for(store, gated, owner="one"), runner_for(store, gated, owner="two")
    runners.extend([first, second])
    counts = await asyncio.gather(first.start(), second.start())
    assert sum(counts) == 6
    for job in jobs:
        await asyncio.wait_for(_terminal(store, job.id), 5)
    assert sorted(gated.resumed) == sorted(f"d-{i}" for i in range(6))


async def test_a_restart_resumes_what_the_stopped_process_left_running(store, gated, runners):
    before = runner_for(store, gated)
    job = await before.submit(REQUEST)
    await gated.started.wait()
    await before.aclose()  # a graceful shutdown: the job stays "running"
    gated.release.set()
    after = runner_for(store, gated)
    runners.append(after)
    assert await after.start() == 1
    assert (await after.wait(job.id)).status is JobStatus.SUCCEEDED
    assert (gated.created, gated.resumed) == (["p1"], ["p1"])


async def test_a_graceful_shutdown_hands_jobs_back_canceling_nothing_upstream(
    store, gated, runners
):
    before = runner_for(store, gated, owner="instance-a")
    job = await before.submit(REQUEST)
    await gated.started.wait()
    await before.aclose()
    assert gated.canceled == []  # its prediction keeps running upstream
    assert (await store.get(job.id)).status is JobStatus.RUNNING
    # Its lease is released: another replica takes it up at once, not after the lease.
    gated.release.set()
    other = runner_for(store, gated, owner="instance-b")
    runners.append(other)
    assert await other.start() == 1
    assert (await other.wait(job.id)).status is JobStatus.SUCCEEDED
    assert (gated.created, gated.resumed) == (["p1"], ["p1"])


async def test_a_create_in_flight_at_the_crash_is_resumed_from_its_record_not_created_again(
    store, gated, runners
):
    job = await unfinished(store, JobStatus.RUNNING)
    sent = PendingCreate("owner/model", {"prompt": "cat"}, 2)
    await store.begin_create(job.id, sent)
    gated.release.set()
    runner = runner_for(store, gated)
    runners.append(runner)
    assert await runner.start() == 1
    assert (await runner.wait(job.id)).status is JobStatus.SUCCEEDED
    assert gated.created == []  # the provider decides by looking upstream, not the runner
    [handed] = gated.pending
    assert (handed.model, dict(handed.inputs), handed.images_requested) == (
        "owner/model",
        {"prompt": "cat"},
        2,
    )
    assert handed.sent_at is not None


async def test_a_job_whose_model_is_no_longer_served_fails(store, gated, runners):
    from imagegen.catalog import Catalog
    from imagegen.jobs.runner import JobRunner

    job = await unfinished(store, JobStatus.QUEUED)
    runner = JobRunner(
        store=store, catalog=Catalog(default=None), ingestor=None, timeout=5, owner="instance-a"
    )
    runners.append(runner)
    await runner.start()
    await asyncio.wait_for(_terminal(store, job.id), 5)
    assert (await store.get(job.id)).error_code == "model_not_found"


async def _terminal(store, generation_id):
    while not (await store.get(generation_id)).status.is_terminal:
        await asyncio.sleep(0.01)


async def test_a_job_of_ours_whose_task_died_is_adopted_when_its_lease_runs_out(
    store, gated, runners
):
    gated.release.set()
    runner = runner_for(store, gated, lease_seconds=1.5)  # renews and sweeps every 0.5 s
    runners.append(runner)
    await runner.start()
    # Ours, running, but no task runs it (its task ended while the database was away, say).
    job = await unfinished(store, JobStatus.RUNNING, predictions=["mine-1"], lease=soon(0.2))
    done = await asyncio.wait_for(runner.wait(job.id), 5)
    assert done.status is JobStatus.SUCCEEDED
    assert gated.resumed == ["mine-1"]


async def test_the_sweep_never_adopts_a_job_its_own_task_runs(store, gated, runners):
    runner = runner_for(store, gated, lease_seconds=1.5)
    runners.append(runner)
    await runner.start()
    job = await runner.submit(REQUEST)
    await gated.started.wait()
    await asyncio.sleep(1.2)  # two sweeps and renewals
    gated.release.set()
    assert (await runner.wait(job.id)).status is JobStatus.SUCCEEDED
    assert (gated.created, gated.resumed) == (["p1"], [])


class CountingClaims:
    """A store whose ``claim_free`` finds nothing, or ``waiting`` jobs while there are any."""

    def __init__(self) -> None:
        self.claims = 0
        self.waiting: list[object] = []

    async def claim_free(self, owner, *, until, limit, exclude=()):
        self.claims += 1
        found, self.waiting = self.waiting[:limit], self.waiting[limit:]
        return found


async def test_wake_ups_after_a_claim_that_found_nothing_share_one_claim():
    store = CountingClaims()
    adopted: list[object] = []
    recovery = Recovery(
        store,  # type: ignore[arg-type]
        owner="a",
        lease_seconds=60,
        clock=lambda: datetime.now(UTC),
        adopt=adopted.append,
        running=list,
        claim_interval=30,
    )
    sharing = asyncio.create_task(recovery.share())
    try:
        for _ in range(50):  # one job ending after another, a millisecond apart
            recovery.wake()
            await asyncio.sleep(0.001)
        await asyncio.sleep(EMPTY_CLAIM_PAUSE + 0.05)
        assert 1 < store.claims < 10  # a claim a pause, not one per wake-up (50)

        job = SimpleNamespace(id="gen_waiting", status=JobStatus.QUEUED)
        store.waiting = [job]  # a job waits: the next wake-up finds it
        recovery.wake()
        await asyncio.sleep(EMPTY_CLAIM_PAUSE + 0.05)
        assert adopted == [job]
    finally:
        sharing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sharing
