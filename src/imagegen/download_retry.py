"""When a failed output download is tried again, and after how long (``imagegen.fetch`` loops).

A download is a GET, so any attempt may be repeated: after a connection error, a reset, a timeout,
a 408, a 429 or a 5xx. Never after another 4xx (a 404 means the output expired: fail fast), nor
after a refusal of imagegen's own (host, address, size, encoding). Waits grow exponentially with
jitter, honour the server's ``Retry-After``, and never run past the download's overall time limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth another attempt of the same GET."""
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


@dataclass(frozen=True, slots=True)
class DownloadRetry:
    """Attempts in all (the first included) and the backoff between them: ``base_delay * 2^(n-1)``
    after failed attempt ``n``, at most ``max_delay``, then scaled by ``1 ± jitter``."""

    max_attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 2.0
    jitter: float = 0.5

    def delay(
        self, attempt: int, retry_after: float | None, remaining: float, draw: Callable[[], float]
    ) -> float | None:
        """Seconds to wait after failed attempt ``attempt`` (1-based), or None to give up: the
        attempts are spent, or the wait (``Retry-After`` when longer) would use up ``remaining``.
        ``draw`` returns a number in [0, 1) for the jitter."""
        if attempt >= self.max_attempts:
            return None
        wait = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        wait *= 1 + self.jitter * (2 * draw() - 1)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait if wait < remaining else None


def retry_after_seconds(
    value: str | None, now: Callable[[], datetime] | None = None
) -> float | None:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date); None when absent or
    unreadable. ``now`` is the wall clock an HTTP date is measured from."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now() if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())
