"""A store known to be down refuses creates before anything is paid (503 with Retry-After in
each endpoint's shape, naming the storage), and service resumes by itself once a probe passes.
A sync request whose paid-for outputs cannot be stored answers by its deadline (504 naming the
generation) while the job goes on storing them in the background."""

from __future__ import annotations

import errno
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.api.conftest import FakeWorld
from tests.api.test_local_faults import OPENAI, FaultyDisk, InlineIngestor, _assert_503, _seed

from imagegen.api import waiting
from imagegen.api.app import create_app
from imagegen.api.deps import Services
from imagegen.config import Settings
from imagegen.errors import StorageUnavailable
from imagegen.storage.health import StoreHealth, TrackedStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class UnreachableBucket(FaultyDisk):
    """Writes fail as S3 does when unreachable: an ``OSError`` that is a ``StorageUnavailable``,
    which the job stores again with backoff (the prediction is paid for)."""

    down = False

    async def put(self, key: str, source: bytes | Path, content_type: str) -> bool:
        if self.down:
            raise _S3Down("S3 request failed: ConnectError")
        return await super().put(key, source, content_type)

    async def check(self) -> None:
        if self.down:
            raise _S3Down("S3 bucket is not usable: ConnectError")
        await super().check()


class _S3Down(StorageUnavailable, OSError):
    pass


class TrackedWorld(FakeWorld):
    def __init__(self, tmp_path: Path, disk: FaultyDisk, **settings: object) -> None:
        super().__init__(tmp_path, **settings)
        self.clock = Clock()
        self.tracked = TrackedStore(disk, StoreHealth("image folder 'images'", clock=self.clock))
        self.image_store = self.tracked  # type: ignore[assignment]
        self.ingestor = InlineIngestor(self.tracked)  # type: ignore[arg-type]

    @asynccontextmanager
    async def services(self, settings: Settings) -> AsyncIterator[Services]:
        async with super().services(settings) as services:
            services.storage_health = self.tracked.health
            yield services


def _client(world: FakeWorld) -> Iterator[TestClient]:
    app = create_app(world.settings, services=world.services)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def disk_world(tmp_path) -> Iterator[tuple[TestClient, TrackedWorld, FaultyDisk]]:
    disk = FaultyDisk(tmp_path / "images")
    world = TrackedWorld(tmp_path, disk)
    for client in _client(world):
        yield client, world, disk


def test_a_store_known_to_be_down_refuses_creates_before_any_prediction(disk_world):
    client, world, disk = disk_world
    assert _seed(client).status_code == 200
    disk.fault = errno.EROFS
    _assert_503(_seed(client), openai=False, mentions="image folder")  # paid, not stored
    calls = len(world.provider.calls)
    assert world.tracked.health.down

    refused = _seed(client)
    _assert_503(refused, openai=False, mentions="new generations are refused")
    assert "image folder 'images'" in refused.json()["error"]
    _assert_503(client.post(OPENAI, json={"prompt": "a cat"}), openai=True, mentions="refused")
    assert len(world.provider.calls) == calls  # nothing more was paid for
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["storage"].startswith("error: image directory")

    disk.fault = None  # storage is back; the last probe was just now
    _assert_503(_seed(client), openai=False, mentions="refused")
    world.clock.now += 1.5  # a probe is due: it passes, and the create goes ahead
    after = _seed(client)
    assert after.status_code == 200, after.text
    assert not world.tracked.health.down
    assert len(world.provider.calls) == calls + 1


def test_readyz_seeing_the_store_back_resumes_creates_at_once(disk_world):
    client, _world, disk = disk_world
    disk.fault = errno.ENOSPC
    assert client.get("/readyz").status_code == 503
    _assert_503(_seed(client), openai=False, mentions="refused")
    disk.fault = None
    assert client.get("/readyz").status_code == 200
    assert _seed(client).status_code == 200


@pytest.fixture
def bucket_world(tmp_path, monkeypatch) -> Iterator[tuple[TestClient, TrackedWorld, FaultyDisk]]:
    monkeypatch.setattr(waiting, "GRACE_SECONDS", 0.5)
    bucket = UnreachableBucket(tmp_path / "images")
    world = TrackedWorld(tmp_path, bucket, request_timeout=1)
    for client in _client(world):
        yield client, world, bucket


def test_a_sync_create_whose_outputs_cannot_be_stored_answers_by_its_deadline(bucket_world):
    client, world, bucket = bucket_world
    bucket.down = True  # goes down after the create was admitted
    started = time.monotonic()
    response = _seed(client)
    assert time.monotonic() - started < 10
    assert response.status_code == 504, response.text
    assert response.headers["x-should-retry"] == "false"  # a new create would pay again
    message = response.json()["error"]
    assert "stored" in message
    [job] = client.get("/api/v1/generations").json()["data"]
    assert job["id"] in message
    assert f"/api/v1/generations/{job['id']}" in message
    assert client.get(f"/api/v1/generations/{job['id']}").json()["status"] == "running"
    _assert_503(_seed(client), openai=False, mentions="refused")  # known down now
    assert len(world.provider.calls) == 1

    bucket.down = False  # the job stores its outputs again, with the one prediction
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        current = client.get(f"/api/v1/generations/{job['id']}").json()
        if current["status"] != "running":
            break
        time.sleep(0.1)
    assert current["status"] == "succeeded", current
    assert len(world.provider.calls) == 1
