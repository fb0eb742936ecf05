"""Build the configured ``ImageStore``: local disk by default, S3 for an ``s3://`` URL.

The S3 backend needs the ``s3`` extra (obstore); it is imported only here, only when configured,
and its absence is a ``ConfigurationError`` that says how to install it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import httpx

from imagegen.errors import ConfigurationError
from imagegen.storage.health import TrackedStore, tracked
from imagegen.storage.local import LocalImageStore
from imagegen.storage.location import LocalLocation, S3Location

if TYPE_CHECKING:
    from imagegen.config import Settings
    from imagegen.storage.s3 import S3ImageStore
    from imagegen.storage.s3_config import S3Config

INSTALL_HINT = "pip install 'imagegen[s3]'"


def require_backend(settings: Settings) -> None:
    """Raise ``ConfigurationError`` now, at start-up, if the configured backend cannot load."""
    if isinstance(settings.storage_location, S3Location):
        _s3_classes()


def open_image_store(
    settings: Settings, environ: Mapping[str, str], stack: AsyncExitStack
) -> TrackedStore:
    """The store ``settings`` name, tracked (``storage/health.py``: creates are refused while
    it is known to be down); ``environ`` holds the ``AWS_*`` variables; ``stack`` closes what
    the store uses (its HTTP client)."""
    location = settings.storage_location
    if isinstance(location, LocalLocation):
        return tracked(LocalImageStore(location.path), f"image folder {str(location.path)!r}")
    config_class, store_class = _s3_classes()
    config = config_class.from_environment(
        location,
        environ,
        endpoint_url=settings.s3_endpoint_url,
        presigned_redirect=settings.s3_presigned_redirect,
        presigned_expiry=settings.s3_presigned_expiry,
    )
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(60.0, connect=settings.http_connect_timeout),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
    )
    stack.push_async_callback(http.aclose)
    store = store_class(config, http=http, staging_dir=settings.data_dir / "staging")
    stack.push_async_callback(store.aclose)
    return tracked(store, f"S3 bucket {config.where}")


def _s3_classes() -> tuple[type[S3Config], type[S3ImageStore]]:
    try:
        from imagegen.storage.s3 import S3ImageStore
        from imagegen.storage.s3_config import S3Config
    except ImportError as exc:
        raise ConfigurationError(
            f"IMAGEGEN_STORAGE_URL is an s3:// URL but the S3 client is not installed "
            f"({exc.name or exc}): {INSTALL_HINT}"
        ) from exc
    return S3Config, S3ImageStore
