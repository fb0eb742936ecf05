"""``CachedResolver``: a download host's addresses remembered for a few seconds.

The safe fetcher resolves a host before every download it pins (``imagegen.fetch``); through
the event loop's ``getaddrinfo`` (a thread hand-off and the system resolver) that costs some
150 us of CPU each time, for the handful of names images come from. The answers are kept for
``ttl`` seconds (10: aiohttp's own default for its DNS cache), failures never. What is cached is
only the resolver's answer: every address is still checked and the connection pinned to a
checked one on every download, so a name that starts resolving elsewhere (DNS rebinding) gains
nothing, and one that moves is followed within ``ttl``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from imagegen.netpolicy import Resolver, system_resolver

DEFAULT_TTL = 10.0
MAX_NAMES = 1024


class CachedResolver:
    """A ``Resolver`` that answers from ``resolver``, each answer kept ``ttl`` seconds on
    ``clock`` (monotonic), at most ``max_names`` (host, port) answers at once."""

    def __init__(
        self,
        resolver: Resolver = system_resolver,
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
        max_names: int = MAX_NAMES,
    ) -> None:
        self._resolver = resolver
        self._ttl = ttl
        self._clock = clock
        self._max_names = max_names
        self._answers: dict[tuple[str, int], tuple[float, Sequence[str]]] = {}

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        key = (host, port)
        kept = self._answers.get(key)
        if kept is not None and kept[0] > self._clock():
            return kept[1]
        addresses = tuple(await self._resolver(host, port))  # OSError: not kept
        now = self._clock()
        if key not in self._answers and len(self._answers) >= self._max_names:
            self._evict(now)
        self._answers[key] = (now + self._ttl, addresses)
        return addresses

    def _evict(self, now: float) -> None:
        """Drop expired answers; if none had, the oldest."""
        expired = [key for key, (until, _) in self._answers.items() if until <= now]
        for key in expired:
            del self._answers[key]
        if not expired:
            del self._answers[next(iter(self._answers))]
