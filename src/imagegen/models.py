"""Typed values that flow through the core: requests, provider results, stored images, jobs."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class JobStatus(enum.StrEnum):
    """The persisted state of a generation: queued -> running -> succeeded | failed | canceled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What the user asked for, validated, in provider-neutral terms."""

    model: str
    prompt: str
    num_images: int
    width: int
    height: int
    seed: int | None = None
    negative_prompt: str | None = None
    output_format: str | None = None
    #: Input images (image-to-image, edits), already verified and stored; ``mask`` marks what
    #: to repaint (inpainting) and has the first image's size.
    images: tuple[StoredImage, ...] = ()
    mask: StoredImage | None = None

    @property
    def inputs(self) -> tuple[StoredImage, ...]:
        """Every input image, the mask last."""
        return self.images if self.mask is None else (*self.images, self.mask)


@dataclass(frozen=True, slots=True)
class ProviderImage:
    """One output as the provider returned it: an ``https:``/``http:`` URL or a ``data:`` URI,
    and the prompt the upstream actually drew (``revised_prompt``) when it rewrote the user's."""

    url: str
    prediction_id: str | None = None
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderResult:
    """All outputs of one generation and how many were asked for (a safety filter may drop some)."""

    images: tuple[ProviderImage, ...]
    requested: int
    # Seconds the upstream billed for (Replicate's ``metrics.predict_time``), None when unknown.
    predict_seconds: float | None = None

    @property
    def missing(self) -> int:
        return max(0, self.requested - len(self.images))


@dataclass(frozen=True, slots=True)
class StoredImage:
    """An image imagegen downloaded, verified and stored under a content-addressed key.

    ``revised_prompt`` belongs to this output of the generation, not to the stored bytes: two
    outputs with identical bytes share a key but keep their own revised prompts.
    """

    key: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    source_url: str | None = None
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """An upstream prediction, recorded before imagegen waits on it (for crash recovery)."""

    prediction_id: str
    inputs: Mapping[str, Any]
    images_requested: int


@dataclass(frozen=True, slots=True)
class PendingCreate:
    """An upstream create whose reply imagegen has not recorded yet.

    Written *before* the create is sent, so that after a crash recovery knows a prediction may
    exist upstream that no job records: it looks for one with this ``model`` and exact
    ``inputs``, created after ``sent_at`` (the store's clock), and adopts it instead of paying
    for another. Recording the prediction clears it.
    """

    model: str
    inputs: Mapping[str, Any]
    images_requested: int
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    """A generation job as persisted: the request, its state, upstream work and results."""

    id: str
    status: JobStatus
    request: GenerationRequest
    provider: str
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    predictions: tuple[PredictionRecord, ...] = ()
    images: tuple[StoredImage, ...] = ()
    provider_urls: tuple[str, ...] = ()
    images_missing: int = 0
    error: str | None = None
    error_code: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    deadline_at: datetime | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = ()
    updated_at: datetime | None = None
    # The API key that created it (None: created without keys); its cost in USD, None unknown.
    owner: str | None = None
    cost: float | None = None
    predict_seconds: float | None = None

    @property
    def images_made(self) -> int:
        """Images the upstream delivered: none unless it succeeded."""
        if self.status is not JobStatus.SUCCEEDED:
            return 0
        return max(0, self.request.num_images - self.images_missing)
