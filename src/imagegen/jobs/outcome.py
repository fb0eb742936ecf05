"""A finished job's error, rebuilt from its record, so a replay answers as the original did.

A waiter that finds a job already finished (an idempotent retry, a restarted process) gets the
same error type, and so the same HTTP status, as the request that ran it.
"""

from __future__ import annotations

from collections.abc import Callable

from imagegen import errors
from imagegen.models import Generation, JobStatus

_HTTP_PREFIX = "upstream_http_"

_BUILDERS: dict[str, Callable[[str, Generation], errors.ImagegenError]] = {
    "invalid_request": lambda m, g: errors.InvalidRequest(m),
    "unsupported_model": lambda m, g: errors.UnsupportedModel(m, model=g.request.model),
    "model_not_found": lambda m, g: errors.ModelNotFound(m, model=g.request.model),
    "deadline_exceeded": lambda m, g: errors.DeadlineExceeded(m),
    "canceled": lambda m, g: errors.Canceled(m),
    "upstream_rate_limited": lambda m, g: errors.UpstreamRateLimited(m, provider=g.provider),
    "upstream_unavailable": lambda m, g: errors.UpstreamUnavailable(m, provider=g.provider),
    "prediction_failed": lambda m, g: errors.PredictionFailed(m, provider=g.provider),
    "image_fetch_error": lambda m, g: errors.ImageFetchError(m, provider=g.provider),
    "configuration_error": lambda m, g: errors.ConfigurationError(m),
    "store_busy": lambda m, g: errors.StoreBusy(m),
    "storage_unavailable": lambda m, g: errors.StorageUnavailable(m),
    "database_unavailable": lambda m, g: errors.DatabaseUnavailable(m),
}


def stored_error(generation: Generation) -> errors.ImagegenError:
    """The error a failed or canceled job ended with."""
    message = generation.error or f"generation {generation.id} {generation.status}"
    if generation.status is JobStatus.CANCELED:
        return errors.Canceled(message)
    code = generation.error_code or ""
    if code.startswith(_HTTP_PREFIX) and code[len(_HTTP_PREFIX) :].isdigit():
        status = int(code[len(_HTTP_PREFIX) :])
        return errors.UpstreamHTTPError(message, provider=generation.provider, status=status)
    builder = _BUILDERS.get(code)
    if builder is not None:
        return builder(message, generation)
    return errors.ImagegenError(message)


def result_of(generation: Generation) -> Generation:
    """The generation if it succeeded; its error if it failed or was canceled."""
    if generation.status in (JobStatus.FAILED, JobStatus.CANCELED):
        raise stored_error(generation)
    return generation
