"""The one ``Retry-After`` parser: what an upstream asks us to wait, within sane bounds.

Used by the provider clients (their retry sleeps and the ``Retry-After`` they pass on to a
client), and by output downloads. Both forms of the header are read (delta-seconds and an HTTP
date); a negative, non-finite or unreadable value is no value, and whatever is read is clamped
to ``[0, maximum]`` before anything sleeps on it or repeats it, so a hostile upstream cannot
park a job or a client for hours.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

DEFAULT_MAX_RETRY_AFTER = 60.0
_MAX_LENGTH = 64  # a Retry-After longer than this is not a number or a date


def seconds_of(value: Any) -> float | None:
    """A finite, non-negative number of seconds from a number or a numeric string, else None
    (booleans, negatives, NaN, infinities and words included)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str) and len(value) > _MAX_LENGTH:
        return None
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def parse_retry_after(
    value: str | None, *, now: Callable[[], datetime] | None = None
) -> float | None:
    """A ``Retry-After`` header in seconds (delta-seconds or an HTTP date), unclamped; None
    when absent or unreadable. ``now`` is the wall clock an HTTP date is measured from."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_LENGTH:
        return None
    seconds = seconds_of(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now() if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def clamp(seconds: float | None, maximum: float = DEFAULT_MAX_RETRY_AFTER) -> float | None:
    """``seconds`` bounded to ``[0, maximum]``; None stays None."""
    if seconds is None or not math.isfinite(seconds):
        return None if seconds is None or math.isnan(seconds) else maximum
    return min(max(0.0, seconds), maximum)


def retry_after(
    value: str | None,
    maximum: float = DEFAULT_MAX_RETRY_AFTER,
    *,
    now: Callable[[], datetime] | None = None,
) -> float | None:
    """``parse_retry_after`` then ``clamp``: the wait to honour, or None."""
    return clamp(parse_retry_after(value, now=now), maximum)
