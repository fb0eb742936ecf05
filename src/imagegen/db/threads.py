"""Threads that run blocking calls for the event loop (the SQLite store's writer and readers).

A call waits in one queue, by priority and then arrival; its outcome goes back to the event loop
that submitted it with one ``call_soon_threadsafe``. A call whose caller was cancelled before it
started never runs; one already running runs to its end (a transaction commits or rolls back
whole).

Threads made with ``group`` take every call queued when they wake (``GROUP_MOST`` at most) and
run them together through it (the SQLite writer commits them as one transaction); their
outcomes go back to each event loop with one ``call_soon_threadsafe`` for the whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

SETTLING = 0  # work on what is already running goes first
ADMISSION = 1  # then work that admits something new
_STOP = 2  # after everything queued

GROUP_MOST = 64  # calls run together by a ``group``

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]
Outcome = tuple[Any, BaseException | None]  # a call's result, or what it raised
# Runs calls together, each with its caller's future: one outcome per call, in order. A call
# whose caller was cancelled before its turn is not run (its outcome is ignored).
Group = Callable[[list[tuple[Callable[[], Any], "asyncio.Future[Any]"]]], list[Outcome]]


class Threads:
    """``count`` daemon threads serving one queue."""

    def __init__(self, name: str, count: int, *, group: Group | None = None) -> None:
        self._group = group
        # A deque per priority (appends and pops are atomic), and one wake-up per call queued.
        self._calls: tuple[deque[_Call | None], ...] = (deque(), deque(), deque())
        self._wakeups: SimpleQueue[None] = SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{index}", daemon=True)
            for index in range(count)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, call: Callable[[], T], *, priority: int = SETTLING) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(priority, (loop, future, call))
        return await future

    def post(self, call: Callable[[], object], *, priority: int = SETTLING) -> None:
        """Queue ``call`` with nobody waiting for it: it must handle its own errors."""
        loop = asyncio.get_running_loop()
        self._put(priority, (loop, loop.create_future(), call))

    def idle(self) -> bool:
        """Whether no call is queued (one may still be running)."""
        return not any(self._calls)

    async def aclose(self) -> None:
        """Run what is queued, then stop the threads."""
        for _ in self._threads:
            self._put(_STOP, None)
        await asyncio.to_thread(self._join)

    def _put(self, priority: int, call: _Call | None) -> None:
        self._calls[priority].append(call)
        self._wakeups.put(None)

    def _next(self) -> _Call | None:
        self._wakeups.get()
        # Each wake-up stands for a call queued before it: one is there for us, in some deque
        # (another thread may empty the one we look at first).
        return self._pop()

    def _join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        if self._group is not None:
            self._serve_groups(self._group)
            return
        while (item := self._next()) is not None:
            loop, future, call = item
            if future.cancelled():
                continue
            try:
                outcome: Outcome = (call(), None)
            except BaseException as exc:  # handed to the caller, whatever it is
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, future, *outcome)

    def _serve_groups(self, group: Group) -> None:
        stop = False
        while not stop and (item := self._next()) is not None:
            items = [item]
            while len(items) < GROUP_MOST:  # what else is queued now, without waiting
                try:
                    self._wakeups.get_nowait()
                except Empty:
                    break
                more = self._pop()
                if more is None:
                    stop = True  # after this group
                    break
                items.append(more)
            live = [each for each in items if not each[1].cancelled()]
            if not live:
                continue
            try:
                outcomes = group([(call, future) for _, future, call in live])
            except BaseException as exc:  # the group's own failure: every caller's
                outcomes = [(None, exc)] * len(live)
            settled: dict[asyncio.AbstractEventLoop, list[tuple[Any, ...]]] = {}
            for (loop, future, _), outcome in zip(live, outcomes, strict=True):
                settled.setdefault(loop, []).append((future, *outcome))
            for loop, futures in settled.items():
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                    loop.call_soon_threadsafe(_settle_all, futures)

    def _pop(self) -> _Call | None:
        """A queued call, after taking its wake-up."""
        while True:
            for calls in self._calls:
                with contextlib.suppress(IndexError):
                    return calls.popleft()


def _settle_all(futures: list[tuple[Any, ...]]) -> None:
    for future, result, error in futures:
        _settle(future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
