"""The composition root: builds every long-lived object from ``Settings`` and closes them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
from dotenv import dotenv_values

from imagegen.api.deps import Services
from imagegen.api.schemas import webhook_renderer
from imagegen.auth.authenticator import Authenticator
from imagegen.auth.exposure import anonymous_allowed, refusal
from imagegen.catalog import Catalog
from imagegen.catalog_file import CatalogFile, load_catalog_file
from imagegen.config import Settings
from imagegen.db.database import Database
from imagegen.db.engine import PoolSettings
from imagegen.db.keys import SqlKeyStore
from imagegen.db.store import new_ulid, open_store, utc_now
from imagegen.db.usage import SqlUsage
from imagegen.errors import ConfigurationError, ImagegenError
from imagegen.fetch import SafeFetcher
from imagegen.http_transport import CookielessClient
from imagegen.ingest import ImageIngestor
from imagegen.inputs import InputImages, InputReader
from imagegen.jobs.events import JobEvents
from imagegen.jobs.setup import start_runner
from imagegen.limits.gate import KeyGate
from imagegen.limits.rate import MemoryRateWindow, RateWindow
from imagegen.metrics import Metrics
from imagegen.netpolicy import AnyPublicHost, HostAllowList
from imagegen.providers.base import Provider
from imagegen.providers.registry import ProviderDeps, ProviderSpec, build_provider
from imagegen.resolver_cache import CachedResolver
from imagegen.shared.client import SharedRedis
from imagegen.shared.keyrate import RedisRateWindow
from imagegen.shared.rate import redis_rates
from imagegen.shared.setup import open_shared_state
from imagegen.storage.base import ImageStore
from imagegen.storage.factory import open_image_store
from imagegen.upstream import AiohttpUpstream, HttpxUpstream, Upstream

log = logging.getLogger(__name__)


def provider_http_client(settings: Settings) -> Upstream:
    """One pooled upstream for provider APIs. Reads allow for Replicate's sync-mode wait."""
    timeout = httpx.Timeout(
        connect=settings.http_connect_timeout,
        read=settings.replicate_wait + 30.0,
        write=30.0,
        pool=30.0,
    )
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    return upstream(settings, timeout, limits)


def upstream(settings: Settings, timeout: httpx.Timeout, limits: httpx.Limits) -> Upstream:
    """aiohttp's pool called directly, or httpx's own client (``imagegen.upstream``), as
    ``IMAGEGEN_PROVIDER_HTTP_TRANSPORT`` says."""
    if settings.provider_http_transport == "aiohttp":
        return AiohttpUpstream(timeout=timeout, limits=limits)
    client = CookielessClient(timeout=timeout, limits=limits, follow_redirects=False)
    return HttpxUpstream(client)


def download_http_client(settings: Settings) -> Upstream:
    """A separate upstream (and pool) for output downloads: no provider credentials ever ride
    along. Its kind is the provider clients': the safe fetcher's pinning (the checked address
    in the URL, the name in ``Host`` and in TLS) works on both."""
    timeout = httpx.Timeout(settings.download_timeout, connect=settings.http_connect_timeout)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    return upstream(settings, timeout, limits)


def blocking_http_client(settings: Settings) -> Upstream:
    """An upstream for APIs that answer only when the image is done (OpenAI-compatible):
    reads may take the whole request deadline."""
    timeout = httpx.Timeout(
        connect=settings.http_connect_timeout,
        read=settings.request_timeout + 5.0,
        write=30.0,
        pool=30.0,
    )
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    return upstream(settings, timeout, limits)


def process_environment(env_file: Path = Path(".env")) -> dict[str, str]:
    """Where the catalog's ``api_key_env`` variables are looked up: ``.env``, then the
    environment, which wins (as for ``Settings``)."""
    values = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    return {**values, **os.environ}


def provider_specs(catalog: CatalogFile, environ: Mapping[str, str]) -> list[ProviderSpec]:
    """The catalog's providers with their keys read from ``environ`` (empty means unset)."""
    specs = []
    for name, entry in catalog.provider_entries().items():
        key = environ.get(entry.api_key_env, "").strip() if entry.api_key_env else ""
        if entry.api_key_env and not key:
            log.warning(
                "provider %r: %s is not set; its upstream will refuse requests",
                name,
                entry.api_key_env,
            )
        specs.append(
            ProviderSpec(
                name=name,
                kind=entry.kind,
                base_url=entry.base_url,
                api_key_env=entry.api_key_env,
                api_key=key or None,
            )
        )
    return specs


@asynccontextmanager
async def build_services(
    settings: Settings, *, environ: Mapping[str, str] | None = None
) -> AsyncIterator[Services]:
    """Everything the app needs; ``environ`` holds the catalog's provider keys and the ``AWS_*``
    variables of S3 storage (default: the process environment and ``.env``). A bad catalog
    file raises ``ConfigurationError``."""
    catalog_file = load_catalog_file(settings.catalog_path, settings)
    environ = process_environment() if environ is None else environ
    specs = provider_specs(catalog_file, environ)
    async with AsyncExitStack() as stack:
        store = await open_store(settings.resolved_database_url, pool=database_pool(settings))
        stack.push_async_callback(store.aclose)
        keys = key_store(store.database)
        usage = SqlUsage(store.database)
        auth = await start_authenticator(stack, settings, keys)
        metrics = Metrics()
        if settings.metrics_port is not None:
            stack.callback(metrics.serve(settings.metrics_host, settings.metrics_port))
        image_store = open_image_store(settings, environ, stack)
        catalog = catalog_file.to_catalog(build_providers(stack, specs, settings, image_store))
        _check_default_model(catalog, settings)
        events = JobEvents()
        redis = await open_shared_state(stack, settings, events)
        # Limits, the webhook worker, and recovery of the jobs a stopped process left unfinished.
        runner = await start_runner(
            stack,
            settings,
            store=store,
            catalog=catalog,
            ingestor=build_ingestor(stack, settings, image_store, specs),
            render=webhook_renderer(public_base_url(settings)),
            limits=catalog_file.provider_limits(settings),
            observer=metrics,
            rates=redis_rates(redis) if redis is not None else None,
            events=events,
        )
        yield Services(
            settings=settings,
            runner=runner,
            catalog=catalog,
            store=store,
            image_store=image_store,
            storage_health=image_store.health,
            inputs=build_inputs(stack, settings, image_store),
            auth=auth,
            keys=keys,
            gate=KeyGate(usage, key_rate_window(redis), clock=utc_now),
            usage=usage,
            metrics=metrics,
            redis=redis,
        )


LAST_USED_FLUSH_SECONDS = 30.0


def key_rate_window(redis: SharedRedis | None) -> RateWindow:
    """Each key's requests per minute: in Redis, shared by every process, when it is
    configured; else counted by this process alone."""
    return RedisRateWindow(redis) if redis is not None else MemoryRateWindow()


def key_store(database: Database) -> SqlKeyStore:
    return SqlKeyStore(database, clock=utc_now, new_id=lambda: "key_" + new_ulid())


async def start_authenticator(
    stack: AsyncExitStack, settings: Settings, keys: SqlKeyStore
) -> Authenticator:
    """The per-request key check; refuses to start bound openly with no key
    (``ConfigurationError``). ``stack`` stops its ``last_used_at`` writer (writing once more)."""
    anonymous = anonymous_allowed(settings)
    if not anonymous and await keys.active_count() == 0:
        raise ConfigurationError(refusal(settings))
    auth = Authenticator(
        keys,
        anonymous_allowed=anonymous,
        cache_seconds=settings.key_cache_seconds,
        clock=utc_now,
    )
    flusher = asyncio.create_task(auth.flush_every(LAST_USED_FLUSH_SECONDS))

    async def stop() -> None:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher

    stack.push_async_callback(stop)
    return auth


def database_pool(settings: Settings) -> PoolSettings:
    return PoolSettings(size=settings.database_pool_size, timeout=settings.database_pool_timeout)


def public_base_url(settings: Settings) -> str:
    """Where clients reach imagegen outside a request (webhook bodies link to it)."""
    return settings.public_base_url or f"http://{settings.host}:{settings.port}"


def build_providers(
    stack: AsyncExitStack,
    specs: Sequence[ProviderSpec],
    settings: Settings,
    image_store: ImageStore | None = None,
) -> dict[str, Provider]:
    """One provider per spec, by name, over shared HTTP clients; ``stack`` closes them all.
    ``image_store`` is where providers read the input images of edits from."""
    deps = ProviderDeps(
        settings=settings,
        http=_owned(stack, provider_http_client(settings)),
        blocking_http=_owned(stack, blocking_http_client(settings)),
        images=image_store,
    )
    providers: dict[str, Provider] = {}
    for spec in specs:
        providers[spec.name] = provider = build_provider(spec, deps)
        stack.push_async_callback(provider.aclose)
    return providers


def build_ingestor(
    stack: AsyncExitStack,
    settings: Settings,
    image_store: ImageStore,
    specs: Sequence[ProviderSpec],
) -> ImageIngestor | None:
    """Downloads outputs from the providers' hosts; None when provider URLs are returned."""
    if settings.return_provider_urls:
        return None
    base_urls = [spec.base_url for spec in specs if spec.base_url]
    fetcher = SafeFetcher(
        _owned(stack, download_http_client(settings)),
        allowed_hosts=HostAllowList.from_settings(settings, *base_urls),
        max_bytes=settings.max_image_bytes,
        timeout=settings.download_timeout,
        resolver=CachedResolver(),
    )
    return ImageIngestor(image_store, fetcher)


def build_inputs(stack: AsyncExitStack, settings: Settings, image_store: ImageStore) -> InputImages:
    """Input images named by URL come from any public https host (users' images live
    anywhere), never from private addresses, except hosts in ``input_allowed_hosts``."""
    policy = AnyPublicHost.of(*settings.input_allowed_hosts)
    fetcher = SafeFetcher(
        _owned(stack, download_http_client(settings)),
        allowed_hosts=policy,
        max_bytes=settings.max_input_image_bytes,
        timeout=settings.download_timeout,
        resolver=CachedResolver(),
    )
    reader = InputReader(
        fetcher,
        staging_dir=image_store.staging_dir,
        max_bytes=settings.max_input_image_bytes,
        max_pixels=settings.max_input_pixels,
        trusted=policy.trusted,
    )
    return InputImages(reader, image_store, max_images=settings.max_input_images)


def _owned(stack: AsyncExitStack, client: Upstream) -> Upstream:
    stack.push_async_callback(client.aclose)
    return client


def _check_default_model(catalog: Catalog, settings: Settings) -> None:
    try:
        catalog.resolve(settings.default_model)
    except ImagegenError as exc:
        log.warning("IMAGEGEN_DEFAULT_MODEL=%r cannot be served: %s", settings.default_model, exc)
