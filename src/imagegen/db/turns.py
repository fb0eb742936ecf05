"""Turns at a connection pool, for transactions on the event loop (the PostgreSQL store).

A pool hands out connections in arrival order: under overload, the writes of jobs already
running queue behind every new request, and a write waiting past the pool timeout fails. Here a
transaction first takes one of ``count`` turns (as many as the pool holds, so the pool itself
never makes anyone wait): ``SETTLING`` transactions (work on jobs already admitted) go first,
in arrival order, and wait as long as it takes; the others (``ADMISSION``: new jobs, and reads)
go in arrival order after them, and give up after ``timeout`` seconds, having run nothing
(``sqlalchemy.exc.TimeoutError``, as the pool refuses a checkout: ``StoreBusy`` to callers).
Under overload, new jobs are refused before running ones stall, as on SQLite's writer queue
(``db/threads.py``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa

from imagegen.db.threads import ADMISSION, SETTLING

__all__ = ["ADMISSION", "SETTLING", "Turns"]


class Turns:
    """``count`` turns; ``timeout``: how long a transaction that is not ``SETTLING`` waits."""

    def __init__(self, count: int, timeout: float) -> None:
        self._free = count
        self._timeout = timeout
        # Waiters by priority; a waiter that gave up stays in its deque, done, and is skipped.
        self._waiting: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    @asynccontextmanager
    async def turn(self, priority: int) -> AsyncIterator[None]:
        await self._take(priority)
        try:
            yield
        finally:
            self._give()

    async def _take(self, priority: int) -> None:
        if self._free > 0:  # a free turn means nobody waits: each one given back goes to a waiter
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[priority].append(future)
        try:
            if priority == SETTLING:
                await future
            else:
                async with asyncio.timeout(self._timeout):
                    await future
        except BaseException as exc:
            if future.done() and not future.cancelled():
                self._give()  # handed a turn just as it gave up: pass it on
            else:
                future.cancel()
            if isinstance(exc, TimeoutError):
                raise sa.exc.TimeoutError(
                    f"waited {self._timeout:g} s for a database connection"
                ) from None
            raise

    def _give(self) -> None:
        for queue in self._waiting:
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        self._free += 1
