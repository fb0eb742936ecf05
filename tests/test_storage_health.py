"""The image store's health: marked down by what its operations raise, cleared by the next
success, re-probed (at most once a second) only while it is down."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagegen.errors import ConfigurationError, NotFound, StorageUnavailable
from imagegen.storage.base import ImageStore, RedirectingStore, StoredObject
from imagegen.storage.health import StoreHealth, TrackedStore

KEY = "a" * 64 + ".png"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FlakyStore:
    """Each operation raises ``fault`` while it is set; counts the probes."""

    def __init__(self, tmp_path: Path) -> None:
        self.fault: Exception | None = None
        self.checks = 0
        self.staging = tmp_path

    @property
    def staging_dir(self) -> Path:
        return self.staging

    def _maybe_fail(self) -> None:
        if self.fault is not None:
            raise self.fault

    async def put(self, key: str, source: bytes | Path, content_type: str) -> bool:
        self._maybe_fail()
        return True

    async def exists(self, key: str) -> bool:
        self._maybe_fail()
        return False

    async def stat(self, key: str) -> StoredObject:
        self._maybe_fail()
        raise NotFound(f"image not found: {key!r}")

    async def iter_bytes(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        self._maybe_fail()
        yield b"chunk"

    async def check(self) -> None:
        self.checks += 1
        self._maybe_fail()


@pytest.fixture
def parts(tmp_path: Path) -> tuple[FlakyStore, TrackedStore, Clock]:
    clock = Clock()
    inner = FlakyStore(tmp_path)
    return inner, TrackedStore(inner, StoreHealth("S3 bucket s3://b", clock=clock)), clock


DOWN = StorageUnavailable("S3 request failed: ConnectError")


async def test_the_wrapper_is_an_image_store_and_streams_when_the_inner_one_cannot_redirect(
    parts,
) -> None:
    _, store, _ = parts
    assert isinstance(store, ImageStore)
    assert isinstance(store, RedirectingStore)
    assert await store.redirect_url(KEY) is None


async def test_up_admits_without_touching_the_store(parts) -> None:
    inner, store, _ = parts
    await store.health.admit()
    assert inner.checks == 0
    assert not store.health.down


@pytest.mark.parametrize("operation", ["put", "exists", "stat", "iter_bytes"])
async def test_a_storage_fault_in_any_operation_marks_it_down_and_a_success_clears_it(
    parts, operation
) -> None:
    inner, store, _ = parts
    inner.fault = DOWN

    async def run() -> None:
        if operation == "put":
            await store.put(KEY, b"x", "image/png")
        elif operation == "iter_bytes":
            async for _ in store.iter_bytes(KEY):
                pass
        else:
            await getattr(store, operation)(KEY)

    with pytest.raises(StorageUnavailable):
        await run()
    assert store.health.down
    assert store.health.reason == str(DOWN)
    inner.fault = None
    with contextlib.suppress(NotFound):  # an answer all the same
        await run()
    assert not store.health.down


async def test_other_errors_leave_it_up(parts) -> None:
    inner, store, _ = parts
    inner.fault = ValueError("bad key")
    with pytest.raises(ValueError):
        await store.put(KEY, b"x", "image/png")
    assert not store.health.down


async def test_any_failed_check_marks_it_down(parts) -> None:
    inner, store, _ = parts
    inner.fault = ConfigurationError("S3 bucket s3://b is not usable: timed out")
    with pytest.raises(ConfigurationError):
        await store.check()
    assert store.health.reason == "S3 bucket s3://b is not usable: timed out"


async def test_while_down_creates_are_refused_naming_the_storage_and_probed_once_a_second(
    parts,
) -> None:
    inner, store, clock = parts
    inner.fault = DOWN
    with pytest.raises(StorageUnavailable):
        await store.put(KEY, b"x", "image/png")

    with pytest.raises(StorageUnavailable) as refused:
        await store.health.admit()  # no probe since it went down: probe now
    assert inner.checks == 1
    assert "S3 bucket s3://b is unavailable" in str(refused.value)
    assert "ConnectError" in str(refused.value)
    assert refused.value.retry_after == 5.0

    clock.now += 0.5
    with pytest.raises(StorageUnavailable):
        await store.health.admit()
    assert inner.checks == 1  # not due yet: refused without I/O

    inner.fault = None  # storage is back
    clock.now += 0.4
    with pytest.raises(StorageUnavailable):
        await store.health.admit()
    assert inner.checks == 1
    clock.now += 0.2
    await store.health.admit()  # due: the probe passes, the create goes ahead
    assert inner.checks == 2
    assert not store.health.down
    await store.health.admit()
    assert inner.checks == 2


async def test_a_readiness_check_counts_as_the_probe(parts) -> None:
    inner, store, _clock = parts
    inner.fault = DOWN
    with pytest.raises(StorageUnavailable):
        await store.check()  # /readyz
    with pytest.raises(StorageUnavailable):
        await store.health.admit()
    assert inner.checks == 1  # /readyz probed a moment ago
    inner.fault = None
    await store.check()  # /readyz sees it back: creates resume at once
    await store.health.admit()
    assert inner.checks == 2
