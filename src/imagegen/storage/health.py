"""Whether the image store is known to be down, learned from what its operations raise.

A prediction is paid for before its images are stored, so a create that arrives while the store
is known to be down is refused before anything is paid (503 with ``Retry-After``). Nothing is
probed for that on the normal path: ``TrackedStore`` wraps the configured store and tells a
``StoreHealth`` how each operation went (``StorageUnavailable`` from ``put``, ``exists``,
``stat`` or ``iter_bytes``, or any failure of ``check``, marks it down; the next success clears
it). While it is down, ``StoreHealth.admit`` re-probes the store with ``check`` at most once per
``probe_interval`` seconds, so creates resume by themselves once storage is back; ``/readyz``
probes through the same wrapper, so its answer counts too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from imagegen.errors import ImagegenError, StorageUnavailable
from imagegen.storage.base import ImageStore, RedirectingStore, StoredObject

PROBE_INTERVAL = 1.0  # seconds between probes of a store known to be down
REFUSAL_RETRY_AFTER = 5.0  # as /readyz says while a dependency is down


class StoreHealth:
    """Up or down, with the reason it is down. ``name`` says which storage ("S3 bucket ...",
    "image folder ..."); ``clock`` (seconds, monotonic) is injectable."""

    def __init__(
        self,
        name: str,
        *,
        probe_interval: float = PROBE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._interval = probe_interval
        self._clock = clock
        self._probe: Callable[[], Awaitable[None]] | None = None
        self._reason: str | None = None
        self._checked_at = float("-inf")
        self._probing = False

    @property
    def down(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        """Why the store is down (the last failure's message), or None while it is up."""
        return self._reason

    def probe_with(self, probe: Callable[[], Awaitable[None]]) -> None:
        """The readiness probe ``admit`` uses (the tracked store's ``check``)."""
        self._probe = probe

    def succeeded(self) -> None:
        self._reason = None

    def failed(self, exc: BaseException) -> None:
        self._reason = str(exc) if isinstance(exc, ImagegenError) else type(exc).__name__

    def checked(self) -> None:
        """A ``check`` ran (whatever it found): the next probe of a down store waits a while."""
        self._checked_at = self._clock()

    async def admit(self) -> None:
        """Return at once while the store is up; while it is down, probe it when a probe is due
        (one at a time) and raise ``StorageUnavailable`` naming it unless the probe passed."""
        if self._reason is None:
            return
        due = self._clock() - self._checked_at >= self._interval
        if due and not self._probing and self._probe is not None:
            self._probing = True
            try:
                await self._probe()
            except Exception:  # recorded by the tracked store; refused below
                pass
            finally:
                self._probing = False
        reason = self._reason
        if reason is not None:
            raise StorageUnavailable(
                f"imagegen's {self.name} is unavailable, so new generations are refused until "
                f"it is back (nothing was sent to the provider): {reason}",
                retry_after=REFUSAL_RETRY_AFTER,
            )


class TrackedStore:
    """An ``ImageStore`` that reports each operation's outcome to ``health``; otherwise it is
    ``inner``. It is a ``RedirectingStore`` too, answering None when ``inner`` is not one."""

    def __init__(self, inner: ImageStore, health: StoreHealth) -> None:
        self.inner = inner
        self.health = health
        health.probe_with(self.check)

    @property
    def staging_dir(self) -> Path:
        return self.inner.staging_dir

    async def put(self, key: str, source: bytes | Path, content_type: str) -> bool:
        try:
            created = await self.inner.put(key, source, content_type)
        except StorageUnavailable as exc:
            self.health.failed(exc)
            raise
        self.health.succeeded()
        return created

    async def exists(self, key: str) -> bool:
        try:
            found = await self.inner.exists(key)
        except StorageUnavailable as exc:
            self.health.failed(exc)
            raise
        self.health.succeeded()
        return found

    async def stat(self, key: str) -> StoredObject:
        try:
            stored = await self.inner.stat(key)
        except StorageUnavailable as exc:
            self.health.failed(exc)
            raise
        except ImagegenError:  # NotFound: the store answered
            self.health.succeeded()
            raise
        self.health.succeeded()
        return stored

    async def iter_bytes(self, key: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        chunks = self.inner.iter_bytes(key, chunk_size)
        answered = False
        try:
            async for chunk in chunks:
                if not answered:
                    answered = True
                    self.health.succeeded()
                yield chunk
        except StorageUnavailable as exc:
            self.health.failed(exc)
            raise
        finally:
            await _aclose(chunks)

    async def check(self) -> None:
        self.health.checked()
        try:
            await self.inner.check()
        except Exception as exc:  # a readiness probe: any failure means the store is unusable
            self.health.failed(exc)
            raise
        self.health.succeeded()

    async def redirect_url(self, key: str) -> str | None:
        if not isinstance(self.inner, RedirectingStore):
            return None
        try:
            return await self.inner.redirect_url(key)
        except StorageUnavailable as exc:
            self.health.failed(exc)
            raise


def tracked(store: ImageStore, name: str) -> TrackedStore:
    """``store`` wrapped with a fresh ``StoreHealth`` named ``name``."""
    return TrackedStore(store, StoreHealth(name))


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()
