"""Outputs that cannot be stored after their predictions succeeded (a full disk, an unwritable
folder) are stored again with backoff while the provider keeps them; the job succeeds once
storage is back, and nothing is created twice."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from tests.fakes.scripted_provider import FakeIngestor
from tests.jobs.conftest import REQUEST, runner_for

from imagegen.errors import ImageFetchError
from imagegen.jobs.outputs import OutputStore
from imagegen.models import JobStatus, ProviderImage, StoredImage


@dataclass
class FullDisk:
    """Raises ENOSPC for the first ``failures`` attempts at each URL, then stores it."""

    failures: int
    attempts: dict[str, int] = field(default_factory=dict)
    inner: FakeIngestor = field(default_factory=FakeIngestor)

    async def ingest(self, url: str) -> StoredImage:
        self.attempts[url] = self.attempts.get(url, 0) + 1
        if self.attempts[url] <= self.failures:
            raise OSError(errno.ENOSPC, "No space left on device")
        return await self.inner.ingest(url)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


IMAGES = [ProviderImage(f"https://replicate.delivery/x/{n}.png", "p1", f"r{n}") for n in range(3)]


async def test_a_local_fault_is_retried_with_backoff_until_storage_is_back() -> None:
    clock = Clock()
    disk = FullDisk(failures=3)
    outputs = OutputStore(disk, sleep=clock.sleep, clock=clock)
    stored, errors = await outputs.store_all("gen_1", IMAGES)
    assert errors == []
    assert [image.source_url for image in stored] == [image.url for image in IMAGES]
    assert [image.revised_prompt for image in stored] == ["r0", "r1", "r2"]
    assert clock.slept == [1.0, 2.0, 4.0]
    assert set(disk.attempts.values()) == {4}


async def test_it_gives_up_only_when_the_provider_no_longer_keeps_the_outputs() -> None:
    clock = Clock()
    outputs = OutputStore(FullDisk(failures=10**6), sleep=clock.sleep, clock=clock)
    stored, errors = await outputs.store_all("gen_1", IMAGES[:1])
    assert stored == []
    [error] = errors
    assert isinstance(error, ImageFetchError)
    assert "could not be stored: No space left on device" in str(error)
    assert 3000 < clock.now <= 3300
    assert max(clock.slept) == 60.0


async def test_other_failures_are_final_and_not_retried() -> None:
    clock = Clock()
    ingestor = FakeIngestor(
        fail_urls={IMAGES[0].url}, error=ImageFetchError("not an image", provider="x")
    )
    stored, errors = await OutputStore(ingestor, sleep=clock.sleep, clock=clock).store_all(
        "gen_1", IMAGES[:2]
    )
    assert len(stored) == 1
    assert [str(e) for e in errors] == ["not an image"]
    assert clock.slept == []


async def test_a_job_whose_outputs_cannot_be_stored_at_first_succeeds_without_a_new_create(
    store, gated, runners
) -> None:
    gated.release.set()
    disk = FullDisk(failures=1)  # one retry, after a second
    runner = runner_for(store, gated, ingestor=disk)
    runners.append(runner)
    job = await runner.submit(REQUEST)
    done = await runner.wait(job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert len(done.images) == 2
    assert gated.created == ["p1"]
    assert set(disk.attempts.values()) == {2}
