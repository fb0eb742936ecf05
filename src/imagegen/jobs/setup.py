"""The job machinery built from ``Settings``: limits, the webhook worker and its own HTTP client,
the runner; started (recovery first) and registered for closing on the caller's exit stack."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack

import httpx

from imagegen.catalog import Catalog
from imagegen.config import Settings
from imagegen.http_transport import DeferredTransport
from imagegen.jobs.events import JobEvents
from imagegen.jobs.limits import Limits, ProviderLimits, RateFactory
from imagegen.jobs.observe import JobObserver, NoObserver
from imagegen.jobs.protocols import GenerationStore, Ingestor
from imagegen.jobs.runner import JobRunner, _utcnow
from imagegen.jobs.webhooks.address import AddressPolicy
from imagegen.jobs.webhooks.client import WebhookSender
from imagegen.jobs.webhooks.messages import Render, WebhookMessages, minimal_body
from imagegen.jobs.webhooks.signing import decode_secret
from imagegen.jobs.webhooks.worker import RetrySchedule, WebhookWorker

REPLICATE = "replicate"


def provider_limits(
    settings: Settings,
    configured: Mapping[str, Limits] | None = None,
    rates: RateFactory | None = None,
) -> ProviderLimits:
    """Each provider's own limits, by its catalog name (``configured``; without it, the
    implicit ``replicate`` from the settings); others are bounded only by the queue. ``rates``
    builds the create rates (default: in-process)."""
    if configured is None:
        replicate = Limits(
            max_concurrency=settings.replicate_max_concurrency,
            per_minute=settings.replicate_creates_per_minute,
            burst=settings.replicate_create_burst,
            max_queue=settings.max_queue,
        )
        configured = {REPLICATE: replicate}
    return ProviderLimits(configured, default=Limits(max_queue=settings.max_queue), rates=rates)


def webhook_http_client(settings: Settings) -> httpx.AsyncClient:
    """The webhook sender's own client: short timeouts, no redirects, no proxy variables."""
    timeout = httpx.Timeout(
        settings.webhook_timeout,
        connect=min(settings.http_connect_timeout, settings.webhook_timeout),
    )
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
    # httpx's own transport, as the client would make it, made on the first delivery.
    transport = DeferredTransport(lambda: httpx.AsyncHTTPTransport(limits=limits, trust_env=False))
    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False, transport=transport
    )


def webhook_worker(
    settings: Settings,
    store: GenerationStore,
    http: httpx.AsyncClient,
    observer: JobObserver | None = None,
) -> WebhookWorker:
    secret = settings.webhook_secret
    sender = WebhookSender(
        http,
        key=decode_secret(secret.get_secret_value()) if secret is not None else None,
        policy=AddressPolicy.of(settings.webhook_allowed_networks),
        timeout=settings.webhook_timeout,
    )
    schedule = RetrySchedule(tuple(settings.webhook_retry_delays), settings.webhook_max_age)
    on_attempt = (observer or NoObserver()).webhook_attempt
    return WebhookWorker(store.outbox, sender, schedule, clock=_utcnow, on_attempt=on_attempt)


async def start_runner(
    stack: AsyncExitStack,
    settings: Settings,
    *,
    store: GenerationStore,
    catalog: Catalog,
    ingestor: Ingestor | None,
    render: Render = minimal_body,
    limits: Mapping[str, Limits] | None = None,
    observer: JobObserver | None = None,
    rates: RateFactory | None = None,
    events: JobEvents | None = None,
) -> JobRunner:
    """Build and start the runner (adopting unfinished jobs); ``stack`` closes it. ``limits``
    are the providers' own, by name (``CatalogFile.provider_limits``); ``rates`` and
    ``events`` are shared with other processes when given (``imagegen.shared``)."""
    http = webhook_http_client(settings)
    stack.push_async_callback(http.aclose)
    worker = webhook_worker(settings, store, http, observer)
    runner = JobRunner(
        store=store,
        catalog=catalog,
        ingestor=ingestor,
        timeout=settings.request_timeout,
        idempotency_ttl=settings.idempotency_ttl,
        limits=provider_limits(settings, limits, rates),
        events=events,
        messages=WebhookMessages(render),
        wake_webhooks=worker.wake,
        owner=settings.instance_id,
        lease_seconds=settings.lease_seconds,
        background=[worker.run],
        observer=observer,
        share_queue=settings.shared_database,
        claim_interval=settings.claim_interval,
    )
    stack.push_async_callback(runner.aclose)
    await runner.start()
    return runner
