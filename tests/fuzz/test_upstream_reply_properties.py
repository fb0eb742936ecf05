"""Properties of what imagegen makes of an upstream's text, over anything Hypothesis invents:

- progress from any logs is None or a fraction in [0, 1], and reading it never looks past the
  last ``LOGS_TAIL`` characters (so its cost does not grow with the logs);
- any ``Retry-After`` value parses without raising, to None or a wait within ``[0, maximum]``;
- a credential inside any text never survives scrubbing, and the result is bounded.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from imagegen.providers.replicate.prediction import LOGS_TAIL, progress_of
from imagegen.providers.replies import REDACTED, Scrubber
from imagegen.retry_after import retry_after

NOW = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)
LOG_PIECES = st.sampled_from(
    ["\n", "\r", " ", "%", "|", "/", "1", "50", " 50%|█████     | 2/4 [00:01<00:01]\n", "x"]
)
LOGS = st.lists(LOG_PIECES, max_size=400).map("".join) | st.text(max_size=2000)


@given(LOGS, st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_progress_is_a_fraction_read_from_the_tail_only(logs: str, head: str) -> None:
    progress = progress_of(logs)
    assert progress is None or 0.0 <= progress <= 1.0
    padded = head + "\n" * LOGS_TAIL + logs  # what lies before the tail changes nothing
    assert progress_of(padded[-LOGS_TAIL:]) == progress_of(padded)


RETRY_AFTER = st.one_of(
    st.text(max_size=80),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
)


@given(RETRY_AFTER, st.floats(min_value=0, max_value=3600))
@settings(max_examples=500, deadline=None)
def test_any_retry_after_is_none_or_within_bounds(value: str, maximum: float) -> None:
    seconds = retry_after(value, maximum, now=lambda: NOW)
    assert seconds is None or 0.0 <= seconds <= maximum


# Keys as providers issue them; never a piece of imagegen's own markers.
SECRET = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"),
    min_size=8,
    max_size=60,
).filter(lambda s: s not in REDACTED + "... (truncated)")


@given(st.text(max_size=3000), st.text(max_size=3000), SECRET)
@settings(max_examples=300, deadline=None)
def test_a_credential_never_survives_scrubbing(before: str, after: str, secret: str) -> None:
    scrubbed = Scrubber([secret], max_chars=1000)(before + secret + after)
    assert secret not in scrubbed
    assert len(scrubbed) <= 1000 + len("... (truncated)")
