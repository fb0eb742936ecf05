"""The composition root: builds every long-lived object from ``Settings`` and closes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx

from imagegen.api.deps import Services
from imagegen.catalog import Catalog
from imagegen.config import Settings
from imagegen.db.store import open_store
from imagegen.fetch import HostAllowList, SafeFetcher
from imagegen.ingest import ImageIngestor
from imagegen.jobs.runner import JobRunner
from imagegen.providers import replicate
from imagegen.storage.local import LocalImageStore


def provider_http_client(settings: Settings) -> httpx.AsyncClient:
    """One pooled client for provider APIs. Reads allow for Replicate's sync-mode wait."""
    timeout = httpx.Timeout(
        connect=settings.http_connect_timeout,
        read=settings.replicate_wait + 30.0,
        write=30.0,
        pool=30.0,
    )
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    return httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)


def download_http_client(settings: Settings) -> httpx.AsyncClient:
    """A separate client for output downloads: no provider credentials ever ride along."""
    timeout = httpx.Timeout(settings.download_timeout, connect=settings.http_connect_timeout)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    return httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)


@asynccontextmanager
async def build_services(settings: Settings) -> AsyncIterator[Services]:
    async with AsyncExitStack() as stack:
        store = await open_store(settings.resolved_database_url)
        stack.push_async_callback(store.aclose)
        image_store = LocalImageStore(settings.images_dir)
        provider_http = provider_http_client(settings)
        stack.push_async_callback(provider_http.aclose)
        download_http = download_http_client(settings)
        stack.push_async_callback(download_http.aclose)

        default = replicate.from_settings(settings, provider_http)
        stack.push_async_callback(default.aclose)
        catalog = Catalog(default=default)
        ingestor = None
        if not settings.return_provider_urls:
            fetcher = SafeFetcher(
                download_http,
                allowed_hosts=HostAllowList.from_settings(settings),
                max_bytes=settings.max_image_bytes,
                timeout=settings.download_timeout,
            )
            ingestor = ImageIngestor(image_store, fetcher)
        runner = JobRunner(
            store=store, catalog=catalog, ingestor=ingestor, timeout=settings.request_timeout
        )
        stack.push_async_callback(runner.aclose)
        yield Services(
            settings=settings,
            runner=runner,
            catalog=catalog,
            store=store,
            image_store=image_store,
        )
