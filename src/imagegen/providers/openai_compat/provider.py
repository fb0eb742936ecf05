"""``OpenAICompatProvider``: OpenAI's Images API and servers that copy it (LocalAI, Together...)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from imagegen import __version__
from imagegen.errors import (
    DeadlineExceeded,
    ModelNotFound,
    PredictionFailed,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from imagegen.models import (
    GenerationRequest,
    PendingCreate,
    PredictionRecord,
    ProviderImage,
    ProviderResult,
)
from imagegen.providers.base import GenerationContext
from imagegen.providers.input_bytes import read_input
from imagegen.providers.masks import to_transparent_repaint
from imagegen.providers.openai_compat.rules import ModelRules, batches, rules_for
from imagegen.providers.openai_compat.wire import (
    ResponseFormat,
    build_body,
    edit_files,
    error_from_response,
    form_fields,
    output_format_for,
    parse_images,
)
from imagegen.providers.replies import ReplyLimits, Scrubber, json_body, send_capped
from imagegen.storage.base import ImageStore
from imagegen.upstream import Upstream, upstream_of

Sleep = Callable[[float], Awaitable[None]]
_Files = list[tuple[str, tuple[str, bytes, str]]]


class _NotSent(UpstreamUnavailable):
    """The connection failed before the request was sent, so a retry cannot double-bill."""


def normalise_base_url(base_url: str) -> str:
    """``https://api.openai.com`` and ``https://api.openai.com/v1/`` both give the former."""
    url = base_url.rstrip("/")
    return url.removesuffix("/v1")


class OpenAICompatProvider:
    """Generates through ``POST {base_url}/v1/images/generations``; ``request.model`` is sent as
    the upstream model name (the catalog rewrites it before calling). ``base_url`` may be given
    with or without the trailing ``/v1`` (``normalise_base_url``); ``api_key=None`` sends no
    ``Authorization`` header (LocalAI without keys).

    Per-model rules (``rules.RULES``) pick the size (nearest enum, or free WxH rounded to 64),
    split ``num_images`` into requests of at most ``max_n`` sent concurrently (dall-e-3: one image
    each), never send ``response_format`` to GPT image models, and send ``seed`` /
    ``negative_prompt`` only to non-OpenAI models. ``url`` outputs come back as they are,
    ``b64_json`` outputs as ``data:`` URIs. A request with input images is an edit: the same
    fields as a multipart form to ``POST {base_url}/v1/images/edits``, with the images (read
    from ``images``, the image store) as ``image`` (``image[]`` for several) and ``mask``.

    A create is an expensive, non-idempotent POST: only 429 (after ``retry-after``) and
    connection failures (nothing was sent) are retried, and only while the retry still fits in
    ``context.deadline``; 5xx and timeouts are not. If some of a fanned-out batch fail, the
    images that did arrive are returned (``ProviderResult.missing`` counts the rest); if none
    arrive, the first error is raised.

    The upstream is synchronous and has no prediction ids: ``context.on_prediction`` is never
    called, ``resume`` raises ``PredictionFailed`` and ``cancel`` does nothing. Cancelling the
    task running ``generate`` closes the in-flight HTTP requests. ``http`` (an ``Upstream``, or
    an ``httpx.AsyncClient`` used as one) belongs to the caller; ``aclose`` does nothing.
    """

    def __init__(
        self,
        http: Upstream | httpx.AsyncClient,
        *,
        name: str,
        base_url: str,
        api_key: str | None,
        sleep: Sleep = asyncio.sleep,
        response_format: ResponseFormat = "b64_json",
        max_retries: int = 3,
        backoff: float = 1.0,
        replies: ReplyLimits | None = None,
        images: ImageStore | None = None,
    ) -> None:
        self.name = name
        self._http = upstream_of(http)
        self._endpoint = f"{normalise_base_url(base_url)}/v1/images/generations"
        self._edits = f"{normalise_base_url(base_url)}/v1/images/edits"
        self._images = images
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._headers = {"User-Agent": f"imagegen/{__version__}", **auth}
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        self._replies = replies or ReplyLimits()
        self._scrub = Scrubber([api_key], max_chars=self._replies.max_error_chars)
        self._sleep = sleep
        self._response_format = response_format
        self._max_retries = max_retries
        self._backoff = backoff

    def first_creates(self, request: GenerationRequest) -> Sequence[PendingCreate]:
        """None: an OpenAI-compatible API has no predictions to look up after a crash."""
        return ()

    async def generate(
        self, request: GenerationRequest, context: GenerationContext
    ) -> ProviderResult:
        """Raises ``UpstreamHTTPError`` (status kept; 429 as ``UpstreamRateLimited``),
        ``UpstreamUnavailable``, ``PredictionFailed`` (no images) or ``DeadlineExceeded``."""
        timeout = asyncio.timeout_at(context.deadline)
        try:
            async with timeout:
                return await self._generate(request, context)
        except TimeoutError as exc:
            if not timeout.expired():
                raise
            message = f"{self.name}: the deadline passed before the upstream answered"
            raise DeadlineExceeded(message) from exc

    async def _generate(
        self, request: GenerationRequest, context: GenerationContext
    ) -> ProviderResult:
        rules = rules_for(request.model)
        files = await self._edit_files(request)
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._batch(request, rules, n, context, files))
                for n in batches(request.num_images, rules.max_n)
            ]
        outcomes = [task.result() for task in tasks]
        images = [image for outcome in outcomes if isinstance(outcome, list) for image in outcome]
        if not images:
            raise next(o for o in outcomes if not isinstance(o, list))
        return ProviderResult(images=tuple(images), requested=request.num_images)

    async def _edit_files(self, request: GenerationRequest) -> _Files | None:
        """The multipart files of an edit (OpenAI's ``/v1/images/edits``); None without images."""
        if not request.images:
            return None
        images = [
            (await read_input(self._images, image, self.name), image.content_type)
            for image in request.images
        ]
        mask = None
        if request.mask is not None:
            data = await read_input(self._images, request.mask, self.name)
            mask = (data, request.mask.content_type)
            # OpenAI repaints where the mask is transparent; a black-and-white mask (white:
            # repaint, Replicate's way) is translated.
            converted = await asyncio.to_thread(to_transparent_repaint, data)
            if converted is not None:
                mask = (converted, "image/png")
        return edit_files(images, mask)

    async def _batch(
        self,
        request: GenerationRequest,
        rules: ModelRules,
        n: int,
        context: GenerationContext,
        files: _Files | None = None,
    ) -> list[ProviderImage] | UpstreamError | ModelNotFound:
        """One upstream request; its error is returned, so siblings already paid for finish."""
        body = build_body(request, rules, n, self._response_format)
        try:
            return await self._create(body, output_format_for(request, rules), context, files)
        except (UpstreamError, ModelNotFound) as exc:
            return exc

    async def _create(
        self,
        body: dict[str, Any],
        sent_format: str | None,
        context: GenerationContext,
        files: _Files | None = None,
    ) -> list[ProviderImage]:
        deadline = context.deadline
        attempt = 0
        while True:
            try:
                await context.acquire_create()  # each POST starts paid work
                return await self._once(body, sent_format, files)
            except (UpstreamRateLimited, _NotSent) as exc:
                delay = getattr(exc, "retry_after", None)
                delay = self._backoff * 2**attempt if delay is None else delay
                if attempt >= self._max_retries or not self._fits(delay, deadline):
                    raise
            await self._sleep(delay)
            attempt += 1

    async def _once(
        self, body: dict[str, Any], sent_format: str | None, files: _Files | None
    ) -> list[ProviderImage]:
        """One POST (an edit: OpenAI's multipart form, the body's fields as form values); its
        reply is read up to the size cap (per image asked for: b64 images come inline), its error
        text scrubbed of credentials, its retry-after clamped."""
        if files is None:
            url, headers, content = self._endpoint, self._json_headers, json_body(body)
        else:
            form = httpx.Request("POST", self._edits, data=form_fields(body), files=files)
            url, content = self._edits, form.read()
            headers = {**self._headers, "Content-Type": form.headers["content-type"]}
        max_bytes = self._replies.max_bytes * max(1, int(body.get("n") or 1))
        try:
            response = await send_capped(
                self._http,
                "POST",
                url,
                headers=headers,
                content=content,
                max_bytes=max_bytes,
                provider=self.name,
                action="generating",
            )
        except httpx.ConnectError as exc:
            message = f"{self.name}: could not connect to the upstream"
            raise _NotSent(message, provider=self.name) from exc
        except httpx.TransportError as exc:  # timeouts, resets: the POST may have run
            message = f"{self.name}: the upstream did not answer ({type(exc).__name__})"
            raise UpstreamUnavailable(message, provider=self.name) from exc
        if not response.is_success:
            raise error_from_response(
                response,
                self.name,
                model=str(body.get("model")),
                scrub=self._scrub,
                max_retry_after=self._replies.max_retry_after,
            )
        return parse_images(response, self.name, sent_format)

    @staticmethod
    def _fits(delay: float, deadline: float) -> bool:
        return asyncio.get_running_loop().time() + delay < deadline

    async def resume(
        self,
        request: GenerationRequest,
        predictions: Sequence[PredictionRecord],
        context: GenerationContext,
        pending: Sequence[PendingCreate] = (),
    ) -> ProviderResult:
        """Always raises ``PredictionFailed``: a synchronous upstream has nothing to resume."""
        message = f"{self.name}: an interrupted generation cannot be resumed (synchronous upstream)"
        raise PredictionFailed(message, provider=self.name)

    async def cancel(self, predictions: Sequence[PredictionRecord]) -> None:
        """Nothing to cancel upstream: OpenAI-style APIs have no prediction ids."""

    async def aclose(self) -> None:
        """The injected HTTP client is the caller's to close."""
