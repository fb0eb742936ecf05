"""The one exception tree of imagegen. No HTTP in here: ``api/errors.py`` maps it to statuses.

    ImagegenError
    ├── InvalidRequest            bad input from the user; names the field
    ├── Unauthenticated           no API key, or a malformed, unknown or revoked one
    ├── Forbidden                 the key may not do this
    │   ├── AdminRequired         an admin-only route
    │   └── ModelNotAllowed       the key's allowed models exclude this one
    ├── KeyLimitExceeded          the key's requests per minute or concurrency; ``retry_after``
    │   └── QuotaExceeded         the key's images per day; names when it resets
    ├── NotFound                  a generation, image or route that does not exist
    │   └── ModelNotFound         the catalog cannot route the model name
    ├── UnsupportedModel          the model exists but does not produce images
    ├── IdempotencyConflict       an Idempotency-Key reused with a different request
    ├── ConfigurationError        a setting is missing or wrong (e.g. no provider key)
    ├── DeadlineExceeded          the request's deadline passed before the generation finished
    │   └── StillStoring          ... because its paid-for outputs are being stored again
    ├── Canceled                  the generation was canceled (by the user or a disconnect)
    ├── QueueFull                 imagegen is at capacity; try again later
    │   ├── StoreBusy             the database is at capacity (no free connection, or locked)
    │   │   └── DatabaseUnavailable   its storage refuses writes: read-only, full, failing I/O
    │   └── SharedStateUnavailable  the shared state (Redis) is unreachable
    ├── InvalidTransition         a job's state changed under us (another writer won the race)
    ├── LeaseLost                 another instance holds the job's lease now: stop working on it
    ├── LocalFault                imagegen's own storage refuses writes; retry later
    │   └── StorageUnavailable    the image store: folder full, read-only or not permitted,
    │                             or S3 unreachable or refusing
    └── UpstreamError             a provider failed; ``message`` is shown to the user verbatim
        ├── UpstreamHTTPError     the provider answered with an error status (4xx/5xx)
        │   └── UpstreamRateLimited   429, with ``retry_after`` seconds when known
        ├── UpstreamUnavailable   connection refused/reset, timeouts, malformed replies
        ├── PredictionFailed      the model ran and failed (or was canceled/aborted upstream)
        └── ImageFetchError       an output could not be downloaded, was too large, or is no image

Providers translate their foreign errors into this tree at their boundary, by type or status,
never by message text, chaining with ``raise ... from exc``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imagegen.models import Generation, JobStatus

# Word boundaries in CamelCase names, acronyms included (UpstreamHTTPError -> upstream_http_error).
_SNAKE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class ImagegenError(Exception):
    """Base of every error imagegen raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    @property
    def code(self) -> str:
        """A stable snake_case code for the class, e.g. ``upstream_rate_limited``."""
        return _SNAKE.sub("_", type(self).__name__).lower()


class InvalidRequest(ImagegenError):
    """The request is malformed; ``field`` names the offending field when there is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unauthenticated(ImagegenError):
    """The request has no usable API key (missing, malformed, unknown or revoked)."""


class Forbidden(ImagegenError):
    """The API key is valid but may not do this."""


class AdminRequired(Forbidden):
    """The route is for admin keys only."""


class ModelNotAllowed(Forbidden):
    """The key's ``models`` list does not name the requested model."""


class KeyLimitExceeded(ImagegenError):
    """A per-key limit refused the request before any upstream call; nothing was stored.
    ``limit`` names it (``rpm``, ``max_concurrent``, ``images_per_day``)."""

    def __init__(self, message: str, *, limit: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after


class QuotaExceeded(KeyLimitExceeded):
    """The key's daily image quota is spent; ``retry_after`` is the time to its reset."""


class NotFound(ImagegenError):
    """A resource (generation, image) does not exist."""


class ModelNotFound(NotFound):
    """No provider serves this model name."""

    def __init__(self, message: str, *, model: str) -> None:
        super().__init__(message)
        self.model = model


class UnsupportedModel(ImagegenError):
    """The model exists but cannot produce images (a text model, say)."""

    def __init__(self, message: str, *, model: str) -> None:
        super().__init__(message)
        self.model = model


class IdempotencyConflict(ImagegenError):
    """An ``Idempotency-Key`` was reused with a different request body."""


class IdempotencyKeyInUse(ImagegenError):
    """Raised by a store: a job with this idempotency key exists; ``existing`` is that job."""

    def __init__(self, existing: Any) -> None:
        super().__init__(f"idempotency key already used by generation {existing.id!r}")
        self.existing = existing


class ConfigurationError(ImagegenError):
    """A setting needed to serve the request is missing or invalid."""


class DeadlineExceeded(ImagegenError):
    """The request's deadline passed; any upstream work was canceled."""


class StillStoring(DeadlineExceeded):
    """A synchronous request's deadline passed while its generation, made upstream, was still
    storing its outputs (the image store is down). The job goes on in the background and is
    never made again; ``generation_id`` is the one to follow."""

    def __init__(self, generation_id: str) -> None:
        super().__init__(
            f"generation {generation_id!r} was made upstream but its images could not be stored "
            f"before the request's deadline: imagegen keeps storing them in the background and "
            f"never makes them again; follow GET /api/v1/generations/{generation_id}"
        )
        self.generation_id = generation_id


class Canceled(ImagegenError):
    """The generation was canceled before it finished."""


class QueueFull(ImagegenError):
    """imagegen is at capacity; ``retry_after`` says when to try again."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreBusy(QueueFull):
    """The database is at capacity: no connection came free in time, or another writer held
    its lock too long. The store raises it in place of the driver's error (``db/errors.py``);
    the transaction did not happen, so the caller may retry it."""

    def __init__(self, message: str, *, retry_after: float | None = 1.0) -> None:
        super().__init__(message, retry_after=retry_after)


class LocalFault(ImagegenError):
    """imagegen's own disk cannot take a write (full, read-only, not permitted). Neither the
    request nor the provider is at fault; ``retry_after`` seconds is a hint."""

    def __init__(self, message: str, *, retry_after: float | None = 30.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageUnavailable(LocalFault):
    """The image store cannot be used: the folder refuses writes or has less free space than
    its floor, or S3 is unreachable or refused the request (its backend raises this in place
    of its client's error, chained to it)."""


class DatabaseUnavailable(StoreBusy):
    """The database's storage refuses writes (read-only, full) or fails its I/O. As with
    ``StoreBusy``, the transaction did not happen and may be retried once the fault passes."""

    def __init__(self, message: str, *, retry_after: float | None = 5.0) -> None:
        super().__init__(message, retry_after=retry_after)


class SharedStateUnavailable(QueueFull):
    """The state shared across processes (Redis: create rates, events) could not be used; what
    needed it did not happen (no upstream call went out unthrottled)."""

    def __init__(self, message: str, *, retry_after: float | None = 2.0) -> None:
        super().__init__(message, retry_after=retry_after)


class InvalidTransition(ImagegenError):
    """A guarded transition did not apply; ``current`` is the job as another writer left it."""

    def __init__(self, current: Generation, target: JobStatus) -> None:
        super().__init__(f"generation {current.id!r} is {current.status}; cannot become {target}")
        self.current = current
        self.target = target


class LeaseLost(ImagegenError):
    """A write fenced by the job's lease matched nothing: another instance adopted the job (this
    one stalled past its lease). Nothing was written; the caller stops working on the job at
    once and cancels nothing upstream, since the adopter resumes what it stored."""

    def __init__(self, generation_id: str) -> None:
        super().__init__(f"generation {generation_id!r} is leased to another instance now")
        self.generation_id = generation_id


class UpstreamError(ImagegenError):
    """A provider failed. ``provider`` names it; ``message`` is safe to show the user."""

    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(message)
        self.provider = provider


class UpstreamHTTPError(UpstreamError):
    """The provider answered with an error status; ``status`` is the provider's own."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int,
        title: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider)
        self.status = status
        self.title = title
        self.detail = detail

    @property
    def code(self) -> str:
        """``upstream_http_402`` and the like: the upstream status survives in job records."""
        if type(self) is UpstreamHTTPError:
            return f"upstream_http_{self.status}"
        return super().code


class UpstreamRateLimited(UpstreamHTTPError):
    """The provider throttled us (429); ``retry_after`` is in seconds when it said so."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int = 429,
        title: str | None = None,
        detail: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status=status, title=title, detail=detail)
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    """The provider could not be reached, timed out, or sent a reply we cannot parse."""


class PredictionFailed(UpstreamError):
    """The model ran and failed, or the provider canceled or aborted it."""

    def __init__(self, message: str, *, provider: str, prediction_id: str | None = None) -> None:
        super().__init__(message, provider=provider)
        self.prediction_id = prediction_id


class ImageFetchError(UpstreamError):
    """A provider output could not be downloaded safely, or is not a decodable image."""
