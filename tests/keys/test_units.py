"""The pieces under the HTTP tests: the key cache and its revocation bound, anonymous access,
batched last-used times, the requests-per-minute window, and catalog pricing."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from imagegen.auth.authenticator import Authenticator
from imagegen.auth.keys import ApiKey, KeyLimits, hash_secret, new_secret
from imagegen.auth.principal import Principal
from imagegen.catalog import Pricing
from imagegen.errors import Unauthenticated
from imagegen.limits.rate import MemoryRateWindow

NOW = datetime(2030, 1, 1, tzinfo=UTC)


class Keys:
    def __init__(self) -> None:
        self.by_hash: dict[str, ApiKey] = {}
        self.finds = 0
        self.counts = 0
        self.touched: list[dict[str, datetime]] = []

    def add(self, name: str) -> tuple[ApiKey, str]:
        secret = new_secret()
        key = ApiKey(f"key_{name}", name, secret[:10], False, KeyLimits(), NOW)
        self.by_hash[hash_secret(secret)] = key
        return key, secret

    def revoke(self, secret: str) -> None:
        digest = hash_secret(secret)
        self.by_hash[digest] = replace(self.by_hash[digest], revoked_at=NOW)

    async def find(self, secret: str) -> ApiKey | None:
        self.finds += 1
        return self.by_hash.get(hash_secret(secret))

    async def active_count(self) -> int:
        self.counts += 1
        return sum(not key.revoked for key in self.by_hash.values())

    async def touch(self, used: dict[str, datetime]) -> None:
        self.touched.append(dict(used))


class HeldKeys(Keys):
    """Keys whose reads answer what was there when they began, once ``release`` is called (or
    fail with ``failure`` when it is set then)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.failure: Exception | None = None

    def release(self) -> None:
        self.gate.set()

    async def find(self, secret: str) -> ApiKey | None:
        self.finds += 1
        found = self.by_hash.get(hash_secret(secret))
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return found

    async def active_count(self) -> int:
        self.counts += 1
        count = sum(not key.revoked for key in self.by_hash.values())
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return count


async def _started(*coroutines: object) -> list[asyncio.Task[Principal]]:
    tasks = [asyncio.ensure_future(c) for c in coroutines]  # type: ignore[call-overload]
    for _ in range(3):
        await asyncio.sleep(0)  # each is waiting on the lookup now
    return tasks


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_revoked_key_works_at_most_for_the_cache_time() -> None:
    keys, clock = Keys(), Clock()
    _, secret = keys.add("app")
    auth = Authenticator(
        keys, anonymous_allowed=False, cache_seconds=1.0, clock=lambda: NOW, monotonic=clock
    )
    header = f"Bearer {secret}"
    assert (await auth.authenticate(header)).name == "app"
    assert (await auth.authenticate(header)).name == "app"
    assert keys.finds == 1  # the second came from the cache
    keys.revoke(secret)  # on another replica
    clock.now += 0.5
    assert (await auth.authenticate(header)).name == "app"  # still within the second
    clock.now += 0.6
    with pytest.raises(Unauthenticated, match="invalid API key"):
        await auth.authenticate(header)


async def test_without_a_cache_every_request_reads_the_key() -> None:
    keys = Keys()
    _, secret = keys.add("app")
    auth = Authenticator(keys, anonymous_allowed=False, cache_seconds=0, clock=lambda: NOW)
    await auth.authenticate(f"Bearer {secret}")
    keys.revoke(secret)
    with pytest.raises(Unauthenticated):
        await auth.authenticate(f"Bearer {secret}")


async def test_anonymous_only_while_no_key_exists_and_allowed() -> None:
    keys, clock = Keys(), Clock()
    auth = Authenticator(
        keys, anonymous_allowed=True, cache_seconds=1.0, clock=lambda: NOW, monotonic=clock
    )
    assert (await auth.authenticate("Bearer sk-whatever")).admin  # SDKs always send one
    keys.add("first")
    auth.forget()
    with pytest.raises(Unauthenticated, match="missing API key"):
        await auth.authenticate(None)
    closed = Authenticator(Keys(), anonymous_allowed=False, clock=lambda: NOW)
    with pytest.raises(Unauthenticated):
        await closed.authenticate(None)


async def test_requests_that_need_a_lookup_under_way_wait_for_it_instead_of_reading() -> None:
    keys = HeldKeys()
    _, secret = keys.add("app")
    auth = Authenticator(keys, anonymous_allowed=True, cache_seconds=1.0, clock=lambda: NOW)
    header = f"Bearer {secret}"
    tasks = await _started(*(auth.authenticate(header) for _ in range(20)))
    assert (keys.counts, keys.finds) == (1, 0)  # one count of the keys for twenty requests
    keys.release()
    assert [p.name for p in await asyncio.gather(*tasks)] == ["app"] * 20
    assert (keys.counts, keys.finds) == (1, 1)  # and one lookup of the key
    await auth.authenticate(header)
    assert (keys.counts, keys.finds) == (1, 1)  # cached


async def test_a_waiter_cancelled_leaves_the_lookup_to_the_others() -> None:
    keys = HeldKeys()
    auth = Authenticator(keys, anonymous_allowed=True, cache_seconds=1.0, clock=lambda: NOW)
    first, second = await _started(auth.authenticate(None), auth.authenticate(None))
    first.cancel()
    await asyncio.sleep(0)
    keys.release()
    assert (await second).admin
    assert first.cancelled()
    assert keys.counts == 1


async def test_a_failed_lookup_fails_its_waiters_and_is_not_kept() -> None:
    keys = HeldKeys()
    keys.failure = RuntimeError("database at capacity")
    auth = Authenticator(keys, anonymous_allowed=True, cache_seconds=1.0, clock=lambda: NOW)
    tasks = await _started(auth.authenticate(None), auth.authenticate(None))
    keys.release()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [str(o) for o in outcomes] == ["database at capacity"] * 2
    assert keys.counts == 1
    keys.failure = None
    assert (await auth.authenticate(None)).admin  # the next request looks again
    assert keys.counts == 2


async def test_a_lookup_begun_before_forget_serves_no_request_after_it() -> None:
    keys = HeldKeys()
    auth = Authenticator(keys, anonymous_allowed=True, cache_seconds=1.0, clock=lambda: NOW)
    (before,) = await _started(auth.authenticate(None))
    keys.add("first")  # created on this replica while the count of keys was under way
    auth.forget()
    (after,) = await _started(auth.authenticate(None))
    assert keys.counts == 2  # a lookup of its own
    keys.release()
    assert (await before).admin  # it asked before the key existed
    with pytest.raises(Unauthenticated, match="missing API key"):
        await after
    with pytest.raises(Unauthenticated, match="missing API key"):
        await auth.authenticate(None)  # the first lookup's answer was not kept
    assert keys.counts == 2


async def test_without_a_cache_requests_at_once_each_read() -> None:
    keys = HeldKeys()
    _, secret = keys.add("app")
    auth = Authenticator(keys, anonymous_allowed=True, cache_seconds=0, clock=lambda: NOW)
    tasks = await _started(*(auth.authenticate(f"Bearer {secret}") for _ in range(3)))
    keys.release()
    await asyncio.gather(*tasks)
    assert (keys.counts, keys.finds) == (3, 3)


async def test_last_used_times_are_flushed_in_one_batch() -> None:
    keys = Keys()
    a, secret_a = keys.add("a")
    b, secret_b = keys.add("b")
    auth = Authenticator(keys, anonymous_allowed=False, clock=lambda: NOW)
    for _ in range(50):
        await auth.authenticate(f"Bearer {secret_a}")
        await auth.authenticate(f"Bearer {secret_b}")
    assert keys.touched == []  # nothing written per request
    await auth.flush()
    assert keys.touched == [{a.id: NOW, b.id: NOW}]


async def test_the_rate_window_counts_the_last_minute() -> None:
    clock = Clock()
    window = MemoryRateWindow(monotonic=clock)
    assert await window.hit("k", 2) is None
    clock.now += 10
    assert await window.hit("k", 2) is None
    assert await window.hit("k", 2) == pytest.approx(50.0)  # the first leaves the window then
    assert await window.hit("other", 2) is None
    clock.now += 50
    assert await window.hit("k", 2) is None


def test_pricing_never_guesses() -> None:
    assert Pricing().cost(3, 12.0) is None
    assert Pricing(per_image=0.04).cost(3, None) == pytest.approx(0.12)
    assert Pricing(per_second=0.001).cost(3, 12.0) == pytest.approx(0.012)
    assert Pricing(per_second=0.001).cost(3, None) is None
    assert Pricing(0.01, 0.001).cost(2, 10.0) == pytest.approx(0.03)
    assert Pricing(per_image=0.04).failed_cost() == 0.0
    assert Pricing(per_second=0.001).failed_cost() is None
