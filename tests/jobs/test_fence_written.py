"""``LeaseFence.begin_create`` for a job written with its first creates: each of those is
announced once without a write, while the job's own write (which wrote the lease) is recent
enough to send; any other create is written under the lease as before."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from imagegen.errors import LeaseLost
from imagegen.jobs.fencing import SEND_WITHIN, LeaseFence
from imagegen.models import PendingCreate

LEASE = 60.0
FIRST = PendingCreate("o/m", {"prompt": "a cat", "seed": 1}, 1)
OTHER = PendingCreate("o/m", {"prompt": "a cat", "seed": 2}, 1)


class Store:
    """What the fence writes: pending creates, lease renewals (held while ``held``)."""

    def __init__(self, *, held: bool = True) -> None:
        self.begun: list[PendingCreate] = []
        self.renewed = 0
        self.held = held

    async def begin_create(self, generation_id: str, pending: PendingCreate, **_: Any) -> None:
        self.begun.append(pending)

    async def renew_leases(self, holder: str, ids: list[str], **_: Any) -> int:
        self.renewed += 1
        return len(ids) if self.held else 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fence(store: Store, clock: Clock) -> LeaseFence:
    return LeaseFence(
        store,  # type: ignore[arg-type]
        holder="me",
        lease_seconds=LEASE,
        clock=lambda: datetime.now(UTC),
        loop_time=clock,
    )


async def test_a_create_written_with_the_job_is_announced_without_a_write() -> None:
    store, clock = Store(), Clock()
    begin = fence(store, clock).begin_create("g1", (FIRST,), written_at=clock.now)
    await begin(PendingCreate("o/m", dict(FIRST.inputs), 1))  # equal, not the same object
    assert store.begun == []
    await begin(OTHER)  # not written with the job
    await begin(FIRST)  # a second create with the same inputs: only one was written
    assert store.begun == [OTHER, FIRST]
    assert store.renewed == 0


async def test_without_creates_written_every_create_is_written() -> None:
    store, clock = Store(), Clock()
    begin = fence(store, clock).begin_create("g1")
    await begin(FIRST)
    await begin(FIRST)
    assert store.begun == [FIRST, FIRST]


async def test_a_job_write_too_old_to_send_on_renews_the_lease_first() -> None:
    store, clock = Store(), Clock()
    begin = fence(store, clock).begin_create("g1", (FIRST,), written_at=clock.now)
    clock.now += LEASE * SEND_WITHIN + 1  # the loop stalled between the write and the send
    await begin(FIRST)
    assert store.begun == []
    assert store.renewed == 1


async def test_a_lease_taken_over_meanwhile_stops_the_create() -> None:
    store, clock = Store(held=False), Clock()
    leases = fence(store, clock)
    begin = leases.begin_create("g1", (FIRST,), written_at=clock.now)
    clock.now += LEASE * SEND_WITHIN + 1
    with pytest.raises(LeaseLost):
        await begin(FIRST)
    assert "g1" in leases.lost
