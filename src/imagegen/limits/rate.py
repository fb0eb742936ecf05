"""Requests per minute per key, as a sliding window of the last 60 seconds.

``RateWindow`` is the seam: ``MemoryRateWindow`` is exact within one process;
``imagegen.shared.keyrate.RedisRateWindow`` is exact across every process sharing one Redis.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

WINDOW = 60.0


class RateWindow(Protocol):
    async def hit(self, key_id: str, limit: int) -> float | None:
        """Count one request for ``key_id`` if fewer than ``limit`` came in the last minute:
        None when counted, else the seconds until one more would be."""
        ...


class MemoryRateWindow:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._hits: dict[str, deque[float]] = {}

    async def hit(self, key_id: str, limit: int) -> float | None:
        now = self._monotonic()
        hits = self._hits.setdefault(key_id, deque())
        while hits and hits[0] <= now - WINDOW:
            hits.popleft()
        if len(hits) >= limit:
            return hits[len(hits) - limit] + WINDOW - now
        hits.append(now)
        return None
