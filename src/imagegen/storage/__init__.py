"""Durable image storage: one ``ImageStore`` protocol (``base``), one module per backend."""

from imagegen.storage.base import (
    CONTENT_TYPES,
    KEY_PATTERN,
    ImageStore,
    StoredObject,
    content_type_for_key,
    etag_for_key,
    image_url,
    is_valid_key,
    make_key,
)
from imagegen.storage.local import LocalImageStore

__all__ = [
    "CONTENT_TYPES",
    "KEY_PATTERN",
    "ImageStore",
    "LocalImageStore",
    "StoredObject",
    "content_type_for_key",
    "etag_for_key",
    "image_url",
    "is_valid_key",
    "make_key",
]
