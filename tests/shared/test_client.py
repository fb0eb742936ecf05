"""Opening Redis: the install hint without the extra, a URL that is not Redis', and a job that
failed for want of Redis answering a replay as the original did (503 with ``Retry-After``)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest

from imagegen.api.errors import retry_after, status_for
from imagegen.errors import ConfigurationError, SharedStateUnavailable
from imagegen.jobs.outcome import stored_error
from imagegen.models import Generation, GenerationRequest, JobStatus
from imagegen.shared.client import open_redis


def test_without_the_redis_package_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # as if not installed
    with pytest.raises(ConfigurationError) as caught:
        open_redis("redis://127.0.0.1:6379/0", "imagegen:")
    assert "imagegen[redis]" in caught.value.message
    assert "IMAGEGEN_REDIS_URL" in caught.value.message


def test_a_url_that_is_not_redis_names_the_variable() -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_redis("http://127.0.0.1:6379", "imagegen:")
    assert "IMAGEGEN_REDIS_URL" in caught.value.message


def test_a_job_failed_for_want_of_redis_replays_as_503_with_retry_after() -> None:
    request = GenerationRequest(prompt="a fox", model="m", num_images=1, width=512, height=512)
    failed = Generation(
        "gen_1",
        JobStatus.FAILED,
        request,
        "replicate",
        datetime.now(UTC),
        error="the shared create rate could not be checked: Redis is unreachable",
        error_code="shared_state_unavailable",
    )
    error = stored_error(failed)
    assert isinstance(error, SharedStateUnavailable)
    assert status_for(error) == 503
    assert retry_after(error) is not None
