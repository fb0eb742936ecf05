"""A thin async client for the parts of Replicate's HTTP API that image generation needs.

It owns no connection: the ``Upstream`` is injected and closed by its owner. Every
failure leaves here as an ``imagegen.errors`` type (see ``errors.py``); retries happen in one
place (``retry.py``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from imagegen import __version__
from imagegen.errors import UpstreamError
from imagegen.providers.replicate.errors import (
    PROVIDER,
    error_from_response,
    malformed_reply,
    transport_error,
)
from imagegen.providers.replicate.prediction import Prediction
from imagegen.providers.replicate.refs import ModelRef
from imagegen.providers.replicate.retry import Clock, Retrier
from imagegen.providers.replies import ReplyLimits, Scrubber, json_body, too_large
from imagegen.upstream import BodyTooLarge, Reply, Upstream

log = logging.getLogger(__name__)

LIST_MAX_PAGES = 20  # pages of 100 read when looking for an orphaned prediction
MAX_WAIT = 60  # Replicate's sync mode holds a create for at most 60 s
MIN_CANCEL_AFTER = 5  # Replicate rejects a Cancel-After under 5 s
_READ_MARGIN = 5.0  # read timeout of a sync create beyond the wait it asked for


def prefer_header(wait_seconds: int, remaining: float) -> str | None:
    """``wait=N`` with N = min(wait_seconds, remaining, 60) and at least 1; None if sync is off."""
    if wait_seconds <= 0:
        return None
    return f"wait={_prefer_wait(wait_seconds, remaining)}"


def _prefer_wait(wait_seconds: int, remaining: float) -> int:
    """The N of ``Prefer: wait=N`` (sync mode on): min(wait_seconds, remaining, 60), at least 1."""
    return max(1, min(wait_seconds, math.floor(remaining), MAX_WAIT))


def cancel_after_header(remaining: float) -> str:
    """A ``Cancel-After`` for the time left (at least Replicate's 5 s minimum), e.g. ``37s``."""
    return f"{max(MIN_CANCEL_AFTER, math.ceil(remaining))}s"


@dataclass(frozen=True, slots=True)
class _Request:
    """A request sent the same for each attempt (a create builds its own per attempt)."""

    method: str
    url: str
    headers: Mapping[str, str]
    content: bytes | None = None
    timeouts: httpx.Timeout | None = None


class ReplicateClient:
    """Create, read and cancel predictions; read model and version schemas.

    Replies are bounded by ``limits``: bodies over ``max_bytes`` are ``ReplyTooLarge`` (never
    retried), error text has the token (and any credential) redacted, retry-after is clamped.
    """

    def __init__(
        self,
        http: Upstream,
        *,
        api_token: str,
        base_url: str,
        retrier: Retrier,
        clock: Clock,
        limits: ReplyLimits | None = None,
    ) -> None:
        self._http = http
        self._limits = limits or ReplyLimits()
        self._scrub = Scrubber([api_token], max_chars=self._limits.max_error_chars)
        self._base_url = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {api_token}",
            "User-Agent": f"imagegen/{__version__}",
        }
        self._retrier = retrier
        self._clock = clock
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        self._sync_timeouts: dict[int, httpx.Timeout] = {}  # per Prefer wait: built once

    async def create(
        self,
        ref: ModelRef,
        inputs: Mapping[str, Any],
        *,
        wait_seconds: int,
        deadline: float,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> Prediction:
        """Start a prediction (sync mode for up to ``wait_seconds``), cancelled at the deadline.

        ``Prefer`` and ``Cancel-After`` are computed afresh for each attempt from the time left.
        ``pace``: imagegen's create rate limit, whose turn a throttled create takes again
        before it is sent again.
        """
        body: dict[str, Any] = {"input": dict(inputs)}
        path = f"{ref.model_path}/predictions"
        if ref.version is not None:
            path, body = "/v1/predictions", {"version": ref.version, **body}
        url, content = self._base_url + path, json_body(body)
        upstream, json_headers, max_bytes = self._http, self._json_headers, self._limits.max_bytes

        def attempt() -> Awaitable[Reply]:
            remaining = deadline - self._clock()
            headers = {**json_headers, "Cancel-After": cancel_after_header(remaining)}
            timeout = None
            if wait_seconds > 0:  # sync mode: Prefer: wait=N, the read held open that long
                wait = _prefer_wait(wait_seconds, remaining)
                headers["Prefer"] = f"wait={wait}"
                timeout = self._sync_timeout(wait)
            return upstream.send(
                "POST", url, headers=headers, content=content, timeouts=timeout, max_bytes=max_bytes
            )

        action = "creating a prediction"
        data = await self._call(attempt, action, deadline=deadline, idempotent=False, pace=pace)
        return Prediction.parse(data, action, self._scrub)

    async def get(self, prediction_id: str, *, deadline: float) -> Prediction:
        action = f"reading prediction {prediction_id}"
        build = self._plain("GET", _prediction_path(prediction_id))
        data = await self._call(build, action, deadline=deadline)
        return Prediction.parse(data, action, self._scrub)

    async def cancel(self, prediction_id: str, *, deadline: float) -> None:
        build = self._plain("POST", _prediction_path(prediction_id) + "/cancel")
        await self._call(build, f"canceling prediction {prediction_id}", deadline=deadline)

    async def list_predictions(
        self, *, created_after: datetime, deadline: float, max_pages: int = LIST_MAX_PAGES
    ) -> list[Prediction]:
        """The account's predictions created at or after ``created_after``, newest first, from
        at most ``max_pages`` pages of 100.

        Only the ``cursor`` of each ``next`` link is followed, against ``base_url``: the token
        is never sent to a host a reply names.
        """
        action = "listing predictions"
        url = self._base_url + "/v1/predictions"
        params = {"created_after": created_after.astimezone(UTC).isoformat()}
        found: list[Prediction] = []
        for _ in range(max_pages):
            page = _Request("GET", str(httpx.URL(url, params=params)), self._headers)
            data = await self._call(self._sender(page), action, deadline=deadline)
            if not isinstance(data, dict) or not isinstance(data.get("results"), list):
                raise malformed_reply(action, "expected an object with a list of results")
            found.extend(_listed(data["results"], action))
            cursor = _cursor_of(data.get("next"))
            if cursor is None:
                return found
            params = {**params, "cursor": cursor}
        log.warning("replicate: listing predictions stopped after %d pages", max_pages)
        return found

    async def model_version(self, ref: ModelRef, *, deadline: float) -> Any:
        """The model (with its ``latest_version``) for ``owner/name``; the version if pinned."""
        path = ref.model_path if ref.version is None else f"{ref.model_path}/versions/{ref.version}"
        return await self._call(self._plain("GET", path), f"reading model {ref}", deadline=deadline)

    async def upload_file(
        self, data: bytes, *, content_type: str, filename: str, deadline: float
    ) -> str:
        """Upload ``data`` to the files API (``POST /v1/files``, multipart ``content``); the
        file's ``urls.get``, which predictions accept as an input URL."""
        url = self._base_url + "/v1/files"
        files = {"content": (filename, data, content_type)}
        form = {"filename": filename, "type": content_type}
        multipart = httpx.Request("POST", url, files=files, data=form)  # encodes the form
        headers = {**self._headers, "Content-Type": multipart.headers["content-type"]}
        upload = _Request("POST", url, headers, multipart.read())
        action = "uploading an input file"
        reply = await self._call(self._sender(upload), action, deadline=deadline, idempotent=False)
        urls = reply.get("urls") if isinstance(reply, dict) else None
        get = urls.get("get") if isinstance(urls, dict) else None
        if not isinstance(get, str) or not get:
            raise malformed_reply(action, "the reply has no urls.get")
        return get

    def _sync_timeout(self, wait: int) -> httpx.Timeout:
        """The upstream's timeouts with a longer read: a sync create is held open for its
        ``Prefer: wait``."""
        timeout = self._sync_timeouts.get(wait)
        if timeout is None:
            self._sync_timeouts[wait] = timeout = _with_read(
                self._http.timeout, wait + _READ_MARGIN
            )
        return timeout

    def _plain(self, method: str, path: str) -> Callable[[], Awaitable[Reply]]:
        return self._sender(_Request(method, self._base_url + path, self._headers))

    def _sender(self, request: _Request) -> Callable[[], Awaitable[Reply]]:
        """Sends ``request`` as it is, for each attempt."""
        upstream, max_bytes = self._http, self._limits.max_bytes

        def attempt() -> Awaitable[Reply]:
            return upstream.send(
                request.method,
                request.url,
                headers=request.headers,
                content=request.content,
                timeouts=request.timeouts,
                max_bytes=max_bytes,
            )

        return attempt

    async def _call(
        self,
        attempt: Callable[[], Awaitable[Reply]],
        action: str,
        *,
        deadline: float,
        idempotent: bool = True,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> Any:
        """Send ``attempt()`` (one request each call) through the retrier; JSON or an imagegen
        error. A reply past ``limits.max_bytes`` is ``ReplyTooLarge`` (never retried)."""
        try:
            response = await self._retrier.send(
                attempt, idempotent=idempotent, deadline=deadline, pace=pace
            )
        except httpx.RequestError as exc:  # transport errors, undecodable bodies, redirects
            raise transport_error(exc, action) from exc
        except BodyTooLarge:
            raise too_large(PROVIDER, action, self._limits.max_bytes) from None
        if response.status_code >= 400:
            max_retry_after = self._limits.max_retry_after
            raise error_from_response(response, scrub=self._scrub, max_retry_after=max_retry_after)
        return _json_of(response, action)


def _with_read(timeout: httpx.Timeout, read: float) -> httpx.Timeout:
    """``timeout`` with a longer read: a sync create is held open for its ``Prefer: wait``."""
    return httpx.Timeout(connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool)


def _listed(items: list[Any], action: str) -> list[Prediction]:
    """The predictions of a page; an item that is not a prediction is skipped."""
    found = []
    for item in items:
        try:
            found.append(Prediction.parse(item, action))
        except UpstreamError:
            continue
    return found


def _cursor_of(next_url: Any) -> str | None:
    if not isinstance(next_url, str) or not next_url:
        return None
    try:
        cursor = httpx.URL(next_url).params.get("cursor")
    except httpx.InvalidURL:
        return None
    return cursor if isinstance(cursor, str) and cursor else None


def _prediction_path(prediction_id: str) -> str:
    return f"/v1/predictions/{quote(prediction_id, safe='')}"


def _json_of(response: Reply, action: str) -> Any:
    if not response.is_success:
        raise malformed_reply(action, f"unexpected HTTP status {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise malformed_reply(action, "the body is not JSON") from exc
