"""Turns at the PostgreSQL pool (``db/turns.py``): settling transactions first and without a time
limit, the others in arrival order for ``timeout`` at most; no turn is ever lost."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from imagegen.db.turns import ADMISSION, SETTLING, Turns


async def hold(turns: Turns, priority: int, release: asyncio.Event, log: list[str], name: str):
    async with turns.turn(priority):
        log.append(name)
        await release.wait()


async def test_settling_goes_first_then_the_others_in_arrival_order() -> None:
    turns, log, release = Turns(1, timeout=5), [], asyncio.Event()
    first = asyncio.ensure_future(hold(turns, ADMISSION, release, log, "first"))
    await asyncio.sleep(0)
    waiting = [
        asyncio.ensure_future(hold(turns, priority, release, log, name))
        for name, priority in (("new 1", ADMISSION), ("settle", SETTLING), ("new 2", ADMISSION))
    ]
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(first, *waiting)
    assert log == ["first", "settle", "new 1", "new 2"]


async def test_the_others_give_up_after_the_timeout_and_settling_waits_on() -> None:
    turns, log, release = Turns(1, timeout=0.05), [], asyncio.Event()
    first = asyncio.ensure_future(hold(turns, SETTLING, release, log, "first"))
    await asyncio.sleep(0)
    settle = asyncio.ensure_future(hold(turns, SETTLING, release, log, "settle"))
    with pytest.raises(sa.exc.TimeoutError):
        await hold(turns, ADMISSION, release, log, "new")
    await asyncio.sleep(0.1)
    assert not settle.done()
    release.set()
    await asyncio.gather(first, settle)
    assert log == ["first", "settle"]
    await asyncio.wait_for(hold(turns, ADMISSION, release, log, "after"), 1)  # none was lost


async def test_a_waiter_cancelled_as_it_is_handed_a_turn_passes_it_on() -> None:
    turns, log, release = Turns(1, timeout=5), [], asyncio.Event()
    release.set()
    first = turns.turn(SETTLING)
    await first.__aenter__()
    cancelled = asyncio.ensure_future(hold(turns, SETTLING, release, log, "cancelled"))
    nxt = asyncio.ensure_future(hold(turns, SETTLING, release, log, "next"))
    await asyncio.sleep(0.01)
    await first.__aexit__(None, None, None)  # hands the turn to "cancelled", not yet running
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    await asyncio.wait_for(nxt, 1)
    assert cancelled.cancelled()
    assert log == ["next"]
    await asyncio.wait_for(hold(turns, ADMISSION, release, log, "after"), 1)  # none was lost
