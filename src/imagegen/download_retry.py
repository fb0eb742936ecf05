"""When a failed output download is tried again, and after how long (``imagegen.fetch`` loops).

A download is a GET, so any attempt may be repeated: after a connection error, a reset, a timeout,
a 408, a 429 or a 5xx. Never after another 4xx (a 404 means the output expired: fail fast), nor
after a refusal of imagegen's own (host, address, size, encoding). Waits grow exponentially with
jitter, honour the server's ``Retry-After`` (read by ``imagegen.retry_after``), and never run
past the download's overall time limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
