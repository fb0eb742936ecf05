"""``ReplicateProvider``: image generation on Replicate behind the ``Provider`` protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import httpx

from imagegen.config import Settings
from imagegen.errors import ImagegenError, ModelNotFound, PredictionFailed, UpstreamHTTPError
from imagegen.models import (
    GenerationRequest,
    PendingCreate,
    PredictionRecord,
    ProviderImage,
    ProviderResult,
    StoredImage,
)
from imagegen.providers.base import GenerationContext
from imagegen.providers.input_bytes import read_input
from imagegen.providers.masks import to_white_repaint
from imagegen.providers.replicate.client import ReplicateClient
from imagegen.providers.replicate.errors import PROVIDER, no_token_error, retry_after_of
from imagegen.providers.replicate.image_inputs import ImageFields, image_fields
from imagegen.providers.replicate.mapping import PlannedPrediction, SizeMemo, plan_predictions
from imagegen.providers.replicate.refs import ModelRef
from imagegen.providers.replicate.retry import Clock, Retrier, RetryPolicy, Sleep
from imagegen.providers.replicate.run import (
    PredictionRun,
    cancel_all,
    deadline_scope,
    pending_create,
)
from imagegen.providers.replicate.schema import ModelSchema, ensure_image_output, read_model_schema
from imagegen.providers.replicate.uploads import input_url
from imagegen.providers.replies import ReplyLimits
from imagegen.storage.base import ImageStore
from imagegen.upstream import Upstream, upstream_of

DEFAULT_BASE_URL = "https://api.replicate.com"


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class ReplicateProvider:
    """Runs text-to-image models on Replicate (see the package docstring for the behaviour).

    ``http`` (an ``Upstream``, or an ``httpx.AsyncClient`` used as one) belongs to the caller,
    who closes it. ``images`` is the store input images are
    read from (edits and image-to-image); without it a request with images is refused. Without
    ``api_token`` every call raises the 401 error Replicate itself would give, without calling
    it. ``sleep`` and ``clock`` (seconds,
    on the clock of ``GenerationContext.deadline``: the event loop's by default) are injectable.
    ``name`` is the provider's catalog name (its limits are looked up by it); ``replies`` bounds
    what Replicate may send back (size, retry-after, error text).
    """

    def __init__(
        self,
        http: Upstream | httpx.AsyncClient,
        *,
        api_token: str | None,
        name: str = PROVIDER,
        replies: ReplyLimits | None = None,
        base_url: str = DEFAULT_BASE_URL,
        wait_seconds: int = 60,
        poll_interval: float = 0.5,
        schema_cache_ttl: float = 3600.0,
        cancel_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = _loop_time,
        images: ImageStore | None = None,
    ) -> None:
        self.name = name
        self._images = images
        self._wait_seconds = wait_seconds
        self._poll_interval = poll_interval
        self._schema_cache_ttl = schema_cache_ttl
        self._cancel_timeout = cancel_timeout
        self._sleep = sleep
        self._clock = clock
        # Per model: until when it is cached, its schema, and its size inputs by size.
        self._schemas: dict[ModelRef, tuple[float, ModelSchema, SizeMemo | None]] = {}
        self._client: ReplicateClient | None = None
        if api_token:
            limits = replies or ReplyLimits()
            retrier = Retrier(
                retry or RetryPolicy(),
                sleep=sleep,
                clock=clock,
                retry_after=partial(retry_after_of, maximum=limits.max_retry_after),
            )
            self._client = ReplicateClient(
                upstream_of(http),
                api_token=api_token,
                base_url=base_url,
                retrier=retrier,
                clock=clock,
                limits=limits,
            )

    def first_creates(self, request: GenerationRequest) -> Sequence[PendingCreate]:
        """Its creates, as ``generate`` maps them, while the model's schema is cached and the
        request has no input image to upload (``Provider.first_creates``)."""
        if self._client is None or request.images or request.mask is not None:
            return ()
        try:
            ref = ModelRef.parse(request.model)
            cached = self._cached(ref)
            if cached is None:
                return ()
            fields = _image_fields(request, *cached)
            if fields.image is not None or fields.mask is not None:
                return ()
            ref, plans = _planned(ref, request, {}, *cached)
        except ImagegenError:  # generate raises it, once the job is written
            return ()
        return tuple(pending_create(ref, plan) for plan in plans)

    async def generate(
        self, request: GenerationRequest, context: GenerationContext
    ) -> ProviderResult:
        """Map the request onto the model's inputs, run its predictions, return their images.

        Raises ``InvalidRequest`` (model ref, output_format), ``UnsupportedModel`` (not an image
        model, before anything is created), ``DeadlineExceeded``, and ``UpstreamError`` types.
        """
        client = self._require_client()
        ref = ModelRef.parse(request.model)
        cached = self._cached(ref)
        if cached is None:
            async with deadline_scope(context.deadline, self._clock):
                cached = await self._schema(client, ref, context.deadline)
        fields = _image_fields(request, *cached)
        values: dict[str, Any] = {}
        if fields.image is not None or fields.mask is not None:
            async with deadline_scope(context.deadline, self._clock):
                values = await self._image_values(client, fields, request, context.deadline)
        ref, plans = _planned(ref, request, values, *cached)
        run = self._run(client, context)
        images = await run.create_all(ref, plans)
        return _result(images, request, run.predict_seconds)

    async def resume(
        self,
        request: GenerationRequest,
        predictions: Sequence[PredictionRecord],
        context: GenerationContext,
        pending: Sequence[PendingCreate] = (),
    ) -> ProviderResult:
        """Wait for predictions created before a restart. A ``pending`` create adopts the
        prediction it started, found by listing the account's predictions, and is sent again
        only when there is none."""
        client = self._require_client()
        if not predictions and not pending:
            raise PredictionFailed("Replicate: no predictions to resume", provider=PROVIDER)
        run = self._run(client, context)
        images = await run.resume_all(predictions, pending)
        return _result(images, request, run.predict_seconds)

    async def cancel(self, predictions: Sequence[PredictionRecord]) -> None:
        """Best-effort cancel; ended or unknown predictions are ignored, nothing is raised."""
        if self._client is None or not predictions:
            return
        ids = [record.prediction_id for record in predictions]
        await cancel_all(self._client, ids, clock=self._clock, within=self._cancel_timeout)

    async def aclose(self) -> None:
        """Nothing to release: the HTTP client belongs to the caller."""
        self._schemas.clear()

    def _require_client(self) -> ReplicateClient:
        if self._client is None:
            raise no_token_error()
        return self._client

    def _run(self, client: ReplicateClient, context: GenerationContext) -> PredictionRun:
        return PredictionRun(
            client,
            context,
            wait_seconds=self._wait_seconds,
            poll_interval=self._poll_interval,
            cancel_timeout=self._cancel_timeout,
            sleep=self._sleep,
            clock=self._clock,
        )

    async def _image_values(
        self,
        client: ReplicateClient,
        fields: ImageFields,
        request: GenerationRequest,
        deadline: float,
    ) -> dict[str, Any]:
        """The input-image values by input name: data URLs, or uploaded files' URLs."""
        values: dict[str, Any] = {}
        if fields.image is not None:
            urls = [await self._input_url(client, image, deadline) for image in request.images]
            values[fields.image] = urls if fields.many else urls[0]
        if fields.mask is not None and request.mask is not None:
            values[fields.mask] = await self._input_url(client, request.mask, deadline, mask=True)
        return values

    async def _input_url(
        self, client: ReplicateClient, image: StoredImage, deadline: float, *, mask: bool = False
    ) -> str:
        data = await read_input(self._images, image, PROVIDER)
        if mask:  # Replicate's models repaint where the mask is white, OpenAI's where clear
            converted = await asyncio.to_thread(to_white_repaint, data)
            if converted is not None:
                data, image = converted, replace(image, content_type="image/png")
        return await input_url(client, image, data, deadline=deadline)

    def _cached(self, ref: ModelRef) -> tuple[ModelSchema, SizeMemo | None] | None:
        """The model's schema and size memo while they are cached, else None."""
        cached = self._schemas.get(ref)
        if cached is not None and cached[0] > self._clock():
            return cached[1], cached[2]
        return None

    async def _schema(
        self, client: ReplicateClient, ref: ModelRef, deadline: float
    ) -> tuple[ModelSchema, SizeMemo | None]:
        """The model's schema (and a memo of its size inputs), cached per ref for
        ``schema_cache_ttl`` seconds."""
        cached = self._cached(ref)
        if cached is not None:
            return cached
        now = self._clock()
        try:
            data = await client.model_version(ref, deadline=deadline)
        except UpstreamHTTPError as exc:
            if exc.status == 404 and ref.version is None:
                raise model_not_found(str(ref), exc) from exc
            if exc.status != 404:
                raise
            # An unknown or private version: let the create itself answer, as Replicate does,
            # with 422 "Invalid version or not permitted" (no prediction is made).
            return ModelSchema(None, None), None
        schema = read_model_schema(data, pinned=ref.version is not None)
        sizes = SizeMemo(schema.inputs) if schema.inputs is not None else None
        if self._schema_cache_ttl > 0:
            self._schemas[ref] = (now + self._schema_cache_ttl, schema, sizes)
        return schema, sizes


def _image_fields(
    request: GenerationRequest, schema: ModelSchema, sizes: SizeMemo | None
) -> ImageFields:
    """The model's inputs for the request's images: ``UnsupportedModel`` (422) for a model that
    makes no images, or cannot take the images the request has."""
    ensure_image_output(schema, request.model)
    return image_fields(schema, request, sizes.images if sizes is not None else None)


def _planned(
    ref: ModelRef,
    request: GenerationRequest,
    values: Mapping[str, Any],
    schema: ModelSchema,
    sizes: SizeMemo | None,
) -> tuple[ModelRef, list[PlannedPrediction]]:
    """The predictions to create for the request (``values``: its images' inputs), and the ref
    to create them on (a community model's owner/name pinned to its version)."""
    plans = plan_predictions(schema.inputs, request, values, sizes=sizes)
    if schema.community_version is not None:
        ref = ModelRef(ref.owner, ref.name, schema.community_version)
    return ref, plans


def model_not_found(model: str, exc: UpstreamHTTPError) -> ModelNotFound:
    """Replicate has no model ``owner/name`` (or this token cannot see it): the user's 404."""
    message = f"model '{model}' was not found on Replicate\n{exc.message}"
    return ModelNotFound(message, model=model)


def _result(
    images: list[ProviderImage], request: GenerationRequest, predict_seconds: float | None
) -> ProviderResult:
    if not images:
        raise PredictionFailed("Replicate: the model returned no images", provider=PROVIDER)
    return ProviderResult(
        images=tuple(images), requested=request.num_images, predict_seconds=predict_seconds
    )


def from_settings(settings: Settings, http: Upstream | httpx.AsyncClient) -> ReplicateProvider:
    """A provider configured from ``Settings``; ``http`` stays the caller's to close."""
    key = settings.replicate_api_key
    return ReplicateProvider(
        http,
        api_token=key.get_secret_value() if key is not None else None,
        base_url=settings.replicate_base_url,
        wait_seconds=settings.replicate_wait,
        poll_interval=settings.poll_interval,
        schema_cache_ttl=settings.schema_cache_ttl,
        replies=ReplyLimits.from_settings(settings),
    )
