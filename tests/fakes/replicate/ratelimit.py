"""Token buckets per route class, and a sliding 60 s window that records the peak create rate."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Take:
    allowed: bool
    remaining: int
    #: Seconds until a token is available again (the ``ratelimit-reset`` / ``Retry-After`` value).
    reset: int


class TokenBucket:
    """``rate_per_min`` tokens a minute, holding at most ``burst``; starts full."""

    def __init__(self, rate_per_min: float, burst: int, clock: Callable[[], float]) -> None:
        self._per_second = rate_per_min / 60.0
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self) -> Take:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._per_second)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return Take(True, int(self._tokens), self._seconds_until(1.0))
        return Take(False, 0, self._seconds_until(1.0))

    def _seconds_until(self, tokens: float) -> int:
        missing = max(0.0, tokens - self._tokens)
        return max(1, math.ceil(missing / self._per_second))


class WindowPeak:
    """Counts events in the trailing ``window`` seconds and remembers the highest count seen."""

    def __init__(self, window: float = 60.0) -> None:
        self._window = window
        self._times: deque[float] = deque()
        self.peak = 0

    def add(self, now: float) -> None:
        self._times.append(now)
        while self._times and now - self._times[0] >= self._window:
            self._times.popleft()
        self.peak = max(self.peak, len(self._times))
