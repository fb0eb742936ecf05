"""The provider seam: one small protocol every upstream implements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from imagegen.models import GenerationRequest, PendingCreate, PredictionRecord, ProviderResult


async def _ignore_prediction(record: PredictionRecord) -> None:
    return None


async def _ignore_progress(fraction: float) -> None:
    return None


async def _no_limit() -> None:
    return None


async def _ignore_create(pending: PendingCreate) -> None:
    return None


async def _adopt_any(record: PredictionRecord) -> bool:
    return True


async def _claim_none(record: PredictionRecord) -> bool:
    return False


def _never() -> bool:
    return False


@dataclass(frozen=True, slots=True)
class GenerationContext:
    """What a provider is told besides the request.

    ``deadline`` is an absolute time on ``loop.time()``'s clock by which the provider must be done;
    it sizes sync-mode waits and ``Cancel-After`` headers. ``on_prediction`` must be awaited with
    each upstream prediction *before* the provider waits on it, so a restart can resume it instead
    of paying twice. ``on_progress`` receives a fraction in [0, 1] when the upstream reports one.
    ``acquire_create`` must be awaited before each upstream call that starts paid work (a
    prediction create): it waits for imagegen's per-provider rate limit, and raises
    ``DeadlineExceeded`` when the turn would come after ``deadline``. ``metered``: the caller
    prices the generation by the seconds the upstream billed, so the provider should report
    them (``ProviderResult.predict_seconds``) even when that costs one more status read.

    ``on_create`` must be awaited with each create's exact inputs *before* it is sent: if the
    reply never comes (a crash, a dropped connection), recovery knows to look upstream for the
    prediction it may have started. ``adopt`` records a prediction found upstream (an orphan of
    such a create) as the job's; it answers False when another job records it already.
    ``claim`` records a prediction found upstream for a create the provider stopped waiting for
    (a cancel came mid-create), only when it can be no other job's: False when a job records it
    or another job has a create with the same inputs in flight.
    ``handing_back`` is true while imagegen shuts down gracefully: a provider cancelled then
    leaves its predictions running upstream, for the next process to resume.

    ``record_finished``, when given, takes a prediction whose create reply is already final (a
    sync-mode answer with its outputs): there is nothing to wait on, so the provider hands it
    over without awaiting the write, which then runs while the outputs are fetched and stored;
    the caller has it recorded before it writes the job's end state. Its pending create is
    committed before the create was sent, so a crash before the record is written leaves the
    same trail as one before the reply came. Without it, such a prediction is awaited through
    ``on_prediction`` like any other.
    """

    deadline: float
    on_prediction: Callable[[PredictionRecord], Awaitable[object]] = field(
        default=_ignore_prediction
    )
    on_progress: Callable[[float], Awaitable[None]] = field(default=_ignore_progress)
    acquire_create: Callable[[], Awaitable[None]] = field(default=_no_limit)
    metered: bool = False
    on_create: Callable[[PendingCreate], Awaitable[None]] = field(default=_ignore_create)
    adopt: Callable[[PredictionRecord], Awaitable[bool]] = field(default=_adopt_any)
    claim: Callable[[PredictionRecord], Awaitable[bool]] = field(default=_claim_none)
    handing_back: Callable[[], bool] = field(default=_never)
    record_finished: Callable[[PredictionRecord], None] | None = None


class Provider(Protocol):
    """An upstream that turns a ``GenerationRequest`` into image URLs.

    A request with ``images`` (and perhaps a ``mask``) is an edit; their bytes are in the image
    store the provider was built with. A model that cannot take them (or needs an image the
    request lacks) is ``UnsupportedModel``, raised before anything is paid for.

    ``generate`` raises only ``imagegen.errors`` types (``UpstreamError`` and its subclasses,
    ``UnsupportedModel``, ``InvalidRequest``, ``ConfigurationError``). If the task running it is
    cancelled (deadline, user cancel, client disconnect), the provider cancels every upstream
    prediction it started before re-raising ``CancelledError``, unless
    ``context.handing_back()``: then it leaves them running for the next process. The provider
    owns nothing it was given: the caller closes the HTTP client it injected; ``aclose``
    releases what the provider created itself.
    """

    name: str

    def first_creates(self, request: GenerationRequest) -> Sequence[PendingCreate]:
        """The creates ``generate`` will send first for ``request`` (each as its
        ``context.on_create`` will name it), when that is known now: without I/O and without
        an error. Empty otherwise, and for a provider that announces no creates. The caller
        may record them with the job, in its first write; ``on_create`` then writes nothing
        for them. Never raises."""
        ...

    async def generate(
        self, request: GenerationRequest, context: GenerationContext
    ) -> ProviderResult: ...

    async def resume(
        self,
        request: GenerationRequest,
        predictions: Sequence[PredictionRecord],
        context: GenerationContext,
        pending: Sequence[PendingCreate] = (),
    ) -> ProviderResult:
        """Finish a generation whose predictions were already created (after a restart).

        ``pending`` are creates sent before the restart whose reply was never recorded: the
        provider adopts the prediction each started (``context.adopt``) if it can find it
        upstream, and creates it only if it cannot.
        """
        ...

    async def cancel(self, predictions: Sequence[PredictionRecord]) -> None:
        """Best-effort cancel of upstream predictions; never raises for an already-ended one."""
        ...

    async def aclose(self) -> None: ...


ProviderInputs = Mapping[str, Any]
