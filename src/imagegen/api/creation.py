"""What every create endpoint does: idempotency, submit, then wait (sync) or return (async)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse
from starlette.requests import Request

from imagegen.api.deps import Services
from imagegen.api.schemas import generation_info
from imagegen.api.waiting import wait_for_job
from imagegen.auth.principal import Principal
from imagegen.config import Settings
from imagegen.errors import InvalidRequest
from imagegen.jobs.protocols import Idempotency
from imagegen.jobs.records import WebhookEvent, WebhookTarget
from imagegen.jobs.webhooks.address import check_webhook_url
from imagegen.models import Generation, GenerationRequest
from imagegen.storage.faults import check_free_space

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as the IETF draft's examples


@dataclass(frozen=True, slots=True)
class Created:
    """A created (or replayed) job; ``finished`` is False when the client asked for async."""

    generation: Generation
    finished: bool


Body = Callable[[], Mapping[str, Any]]
"""What an ``Idempotency-Key`` is bound to, besides the endpoint: the request body as JSON values
(built only for a request that has a key)."""


def idempotency_of(
    request: Request, scope: str, body: Body, owner: str | None = None
) -> Idempotency | None:
    """The request's ``Idempotency-Key``, bound to a digest of the endpoint and body, and
    scoped to the API key (``owner``): two keys using the same value get two jobs."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _KEY.match(key):
        raise InvalidRequest(
            "Idempotency-Key: must be 1 to 255 visible ASCII characters", field="Idempotency-Key"
        )
    canonical = json.dumps({"scope": scope, "body": body()}, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return Idempotency(key=scoped_key(key, owner), request_hash=digest, shown=key)


def scoped_key(key: str, owner: str | None) -> str:
    """The stored form of a key's ``Idempotency-Key`` (at most 255 characters)."""
    if owner is None:
        return key
    scoped = f"{owner}:{key}"
    if len(scoped) <= 255:
        return scoped
    return f"{owner}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def wants_async(request: Request) -> bool:
    """``Prefer: respond-async`` (RFC 7240), as cog and Replicate's own API use it."""
    for header in request.headers.getlist("prefer"):
        for preference in header.split(","):
            if preference.split(";", 1)[0].strip().lower() == "respond-async":
                return True
    return False


def webhook_target(
    url: str | None, events: Sequence[str] | None, settings: Settings
) -> WebhookTarget | None:
    """The request's webhook, checked (``InvalidRequest`` names the field); None without one.

    Webhooks are signed, so a server without ``IMAGEGEN_WEBHOOK_SECRET`` refuses them (400: no
    retry would help).
    """
    if url is None:
        if events is not None:
            raise InvalidRequest(
                "webhook_events_filter: needs a webhook", field="webhook_events_filter"
            )
        return None
    if settings.webhook_secret is None:
        raise InvalidRequest(
            "webhook: this imagegen cannot send webhooks (IMAGEGEN_WEBHOOK_SECRET is not set)",
            field="webhook",
        )
    checked = check_webhook_url(url.strip(), settings.webhook_allowed_networks)
    chosen = [WebhookEvent.COMPLETED] if events is None else [WebhookEvent(e) for e in events]
    if not chosen:
        raise InvalidRequest(
            "webhook_events_filter: name at least one event", field="webhook_events_filter"
        )
    return WebhookTarget(checked, tuple(dict.fromkeys(chosen)))


@dataclass(frozen=True, slots=True)
class KeyAdmission:
    """A request past its key's limits (``admit_key``). ``hold``: what ``JobRunner.submit``
    holds while it writes the job (concurrency and daily images, checked again there, under a
    lock); None when the key has no such limits."""

    hold: Callable[[], AbstractAsyncContextManager[None]] | None = None


async def admit_key(
    services: Services,
    principal: Principal,
    generation_request: GenerationRequest,
    *,
    before_storing: bool = False,
) -> KeyAdmission:
    """The key's models and requests per minute, before anything is stored or sent upstream:
    ``ModelNotAllowed`` (403) or ``KeyLimitExceeded`` (429). Concurrency and images per day are
    checked as the job is written; ``before_storing`` (a route about to store input images)
    checks them now too, so a refused request stores nothing."""
    if principal.key is None or services.gate is None:
        return KeyAdmission()
    route = services.catalog.resolve(generation_request.model)
    await services.gate.check(principal.key, (generation_request.model, route.public_model))
    hold = services.gate.admission(principal.key, generation_request.num_images)
    if hold is not None and before_storing:
        async with hold():  # refused now if already over; the job's write checks again
            pass
    return KeyAdmission(hold)


async def create(
    services: Services,
    request: Request,
    generation_request: GenerationRequest,
    *,
    principal: Principal,
    scope: str,
    body: Body,
    webhook: WebhookTarget | None = None,
    metadata: Mapping[str, Any] | None = None,
    admitted: KeyAdmission | None = None,
) -> Created:
    """Submit the job and, unless the client asked for async, wait for it. ``admitted``: the
    key's limits already checked for this request (``admit_key``); checked here if None."""
    if not services.settings.return_provider_urls:
        # A prediction is paid for before its images are stored: refuse while there is no room.
        check_free_space(services.settings.images_dir, services.settings.min_free_bytes)
        if services.storage_health is not None:  # no I/O unless the store is known to be down
            await services.storage_health.admit()
    idempotency = idempotency_of(request, scope, body, principal.owner)
    if admitted is None:
        admitted = await admit_key(services, principal, generation_request)
    job = await services.runner.submit(
        generation_request,
        idempotency=idempotency,
        webhook=webhook,
        metadata={"endpoint": scope, **(metadata or {})},
        owner=principal.owner,
        gate=admitted.hold,
    )
    if wants_async(request):
        return Created(job, finished=False)
    return Created(await wait_for_job(services.runner, job, request), finished=True)


def accepted(generation: Generation, base_url: str, services: Services) -> JSONResponse:
    """``202 Accepted`` for ``Prefer: respond-async``: the job as ``GET`` shows it, with the
    URLs to follow (``urls.get``, ``urls.events``) and cancel it (``urls.cancel``)."""
    info = generation_info(generation, base_url, progress=services.runner.progress(generation.id))
    return JSONResponse(
        info.model_dump(mode="json"),
        status_code=202,
        headers={"Location": info.urls.get, "Preference-Applied": "respond-async"},
    )
