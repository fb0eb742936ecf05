"""The download resolver's cache: answers kept for their time, failures never, bounded."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from imagegen.resolver_cache import CachedResolver


class Counting:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append((host, port))
        if host not in self.answers:
            raise OSError(f"{host} does not resolve")
        return list(self.answers[host])


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_an_answer_is_kept_for_its_time() -> None:
    upstream, clock = Counting({"a.test": ["203.0.113.5"]}), Clock()
    resolve = CachedResolver(upstream, ttl=10.0, clock=clock)
    assert await resolve("a.test", 443) == ("203.0.113.5",)
    clock.now += 9.9
    assert await resolve("a.test", 443) == ("203.0.113.5",)
    assert len(upstream.calls) == 1
    await resolve("a.test", 80)  # another port is another question
    assert len(upstream.calls) == 2
    upstream.answers["a.test"] = ["203.0.113.9"]  # the name moved
    clock.now += 0.2
    assert await resolve("a.test", 443) == ("203.0.113.9",)
    assert len(upstream.calls) == 3


async def test_a_failure_is_never_kept() -> None:
    upstream = Counting({})
    resolve = CachedResolver(upstream, clock=Clock())
    for _ in range(2):
        with pytest.raises(OSError, match="does not resolve"):
            await resolve("gone.test", 443)
    assert len(upstream.calls) == 2


async def test_the_cache_is_bounded_dropping_the_oldest() -> None:
    names = {f"h{i}.test": [f"203.0.113.{i}"] for i in range(4)}
    upstream, clock = Counting(names), Clock()
    resolve = CachedResolver(upstream, clock=clock, max_names=3)
    for name in ("h0.test", "h1.test", "h2.test", "h3.test"):  # h3 takes h0's place
        await resolve(name, 443)
    await resolve("h1.test", 443)
    assert len(upstream.calls) == 4
    await resolve("h0.test", 443)
    assert upstream.calls[-1] == ("h0.test", 443)
    assert len(upstream.calls) == 5
