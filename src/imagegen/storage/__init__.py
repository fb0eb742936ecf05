"""Durable image storage: one ``ImageStore`` protocol (``base``), one module per backend.

The S3 backend (``imagegen.storage.s3``) needs the ``s3`` extra and is imported only when
configured (``imagegen.storage.factory``)."""

from imagegen.storage.base import (
    CACHE_CONTROL,
    CONTENT_TYPES,
    KEY_PATTERN,
    ImageStore,
    RedirectingStore,
    StoredObject,
    content_type_for_key,
    etag_for_key,
    image_url,
    is_valid_key,
    make_key,
)
from imagegen.storage.local import LocalImageStore

__all__ = [
    "CACHE_CONTROL",
    "CONTENT_TYPES",
    "KEY_PATTERN",
    "ImageStore",
    "LocalImageStore",
    "RedirectingStore",
    "StoredObject",
    "content_type_for_key",
    "etag_for_key",
    "image_url",
    "is_valid_key",
    "make_key",
]
