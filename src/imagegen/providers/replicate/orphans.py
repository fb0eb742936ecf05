"""Finding the predictions of creates whose reply never came, so that none is paid for twice.

Replicate has no idempotency key on create. imagegen records each create before sending it
(``PendingCreate``: the model, the exact inputs, the time); when a restart finds one without a
prediction, the create may or may not have reached Replicate. ``GET /v1/predictions`` lists the
account's predictions with their model, version and exact input, newest first; a prediction of
the same model with the same input, created since the create was sent (less ``CLOCK_SKEW``),
and recorded by no job, is that create's. It is adopted (``GenerationContext.adopt``: one job
only) instead of creating again. Predictions with equal inputs are interchangeable, so when
several creates share inputs, each takes the oldest one left. A create sent moments ago may
still be landing upstream, so the search waits until ``SETTLE`` after the latest one.

The same list serves a cancel that comes while a create is in flight (``hunt``): a sync-mode
create answers only when the model is done, too late to stop the billing, so once the create
has taken ``HUNT_AFTER`` the run looks for its prediction every ``HUNT_EVERY`` and cancels it
the moment it is there and can be no other job's (``GenerationContext.claim``). And a create
that fails in a way that leaves its outcome unknown (a 5xx, a timeout or a connection lost after
the request was sent) looks once for the prediction it may have started (``find_lost``): if it
is there it is the job's, and billing for it is not wasted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta

from imagegen.errors import UpstreamError, UpstreamHTTPError, UpstreamUnavailable
from imagegen.models import PendingCreate, PredictionRecord
from imagegen.providers.replicate.client import ReplicateClient
from imagegen.providers.replicate.prediction import Prediction
from imagegen.providers.replicate.refs import ModelRef

# How far Replicate's clock may lag imagegen's when the window of a search is chosen.
CLOCK_SKEW = timedelta(seconds=60)
# A create sent this recently may still be landing (its connection was cut while Replicate was
# taking it): the search waits until then, so a prediction made late is not missed.
SETTLE = timedelta(seconds=3)
LOST_SETTLE = 0.5  # seconds before looking for the prediction of a create whose reply was lost
HUNT_AFTER = 0.5  # seconds a create may take to answer before a cancel looks for it
HUNT_EVERY = 0.25  # seconds between looks

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def find_orphans(
    client: ReplicateClient,
    pending: Sequence[PendingCreate],
    *,
    taken: Collection[str],
    adopt: Callable[[PredictionRecord], Awaitable[bool]],
    deadline: float,
    now: Callable[[], datetime] = _utcnow,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> list[Prediction | None]:
    """For each pending create, the upstream prediction it started (now adopted), or None when
    there is none to adopt. ``taken``: ids this job follows already. Raises ``UpstreamError``
    when the list cannot be read: then nobody can say whether creating again pays twice."""
    sent = [p.sent_at for p in pending if p.sent_at is not None]
    if not pending:
        return []
    if not sent:
        return [None] * len(pending)
    wait = (max(sent) + SETTLE - now()).total_seconds()
    if wait > 0:
        await sleep(wait)
    listed = await client.list_predictions(created_after=min(sent) - CLOCK_SKEW, deadline=deadline)
    candidates = _oldest_first(listed)
    used = set(taken)
    found: list[Prediction | None] = []
    for create in pending:
        match = None
        for candidate in candidates:
            if candidate.id in used or not same_create(candidate, create):
                continue
            used.add(candidate.id)
            record = PredictionRecord(candidate.id, dict(create.inputs), create.images_requested)
            if await adopt(record):
                match = candidate
                break
        found.append(match)
    return found


async def hunt(
    client: ReplicateClient,
    create: asyncio.Future[Prediction],
    pending: PendingCreate,
    *,
    claim: Callable[[PredictionRecord], Awaitable[bool]],
    cancel: Callable[[str], Awaitable[None]],
    until: float,
    clock: Callable[[], float],
) -> None:
    """Cancel the prediction of ``create`` (whose run was cancelled) as soon as the list shows
    it, without waiting for the create to answer; stops once the create answers (its reply
    names the prediction) or at ``until`` (on ``clock``). ``pending.sent_at`` is required."""
    assert pending.sent_at is not None
    await asyncio.wait({create}, timeout=HUNT_AFTER)
    while not create.done() and clock() < until:
        try:
            listed = await client.list_predictions(
                created_after=pending.sent_at - CLOCK_SKEW, deadline=until
            )
        except UpstreamError as exc:
            log.info("replicate: looking for a canceled create's prediction: %s", exc)
            listed = []
        for candidate in _oldest_first(listed):
            if candidate.status.is_terminal or not same_create(candidate, pending):
                continue
            record = PredictionRecord(candidate.id, dict(pending.inputs), pending.images_requested)
            if await claim(record):
                await cancel(candidate.id)
                return
        await asyncio.wait({create}, timeout=HUNT_EVERY)


def outcome_unknown(exc: UpstreamError) -> bool:
    """Whether a failed create may have started a prediction all the same."""
    if isinstance(exc, UpstreamHTTPError):
        return exc.status >= 500
    return isinstance(exc, UpstreamUnavailable)


async def find_lost(
    client: ReplicateClient,
    pending: PendingCreate,
    *,
    claim: Callable[[PredictionRecord], Awaitable[bool]],
    deadline: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Prediction | None:
    """The prediction a create whose reply was lost started, claimed for the job (only if it
    can be no other job's), or None; ``pending.sent_at`` is required. Never raises for the
    list: the create's own error is the one to report."""
    assert pending.sent_at is not None
    await sleep(LOST_SETTLE)
    try:
        listed = await client.list_predictions(
            created_after=pending.sent_at - CLOCK_SKEW, deadline=deadline
        )
    except UpstreamError as exc:
        log.info("replicate: looking for the prediction of a lost create: %s", exc)
        return None
    for candidate in _oldest_first(listed):
        if not same_create(candidate, pending):
            continue
        record = PredictionRecord(candidate.id, dict(pending.inputs), pending.images_requested)
        if await claim(record):
            log.warning(
                "replicate: a create's reply was lost; adopted its prediction %s", candidate.id
            )
            return candidate
    return None


def _oldest_first(listed: Sequence[Prediction]) -> list[Prediction]:
    return sorted(
        (p for p in listed if p.created_at is not None), key=lambda p: (p.created_at, p.id)
    )


def same_create(listed: Prediction, create: PendingCreate) -> bool:
    """Whether ``listed`` is a prediction of ``create``'s model (and version) and exact input."""
    ref = ModelRef.parse(create.model)
    if listed.model != f"{ref.owner}/{ref.name}":
        return False
    if ref.version is not None and listed.version != ref.version:
        return False
    return isinstance(listed.input, dict) and listed.input == dict(create.inputs)
