"""Output files: what a finished prediction's output URLs point at, and when they disappear.

URLs look like ``<file_base>/delivery/<prefix>/<44-char id>/out-<i>.<ext>`` (the shape of
``https://replicate.delivery/xezq/<id>/out-0.webp``). Bytes are made on first read.
"""

from __future__ import annotations

import base64
import secrets
import string
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tests.fakes.images import make_image, mime_type, palette_color
from tests.fakes.replicate.faults import LARGE_SIZE, PRIVATE_URL
from tests.fakes.replicate_models import TEXT_CHUNKS

if TYPE_CHECKING:
    from tests.fakes.replicate.predictions import Prediction

PREFIXES = ("xezq", "pbxt", "yhqm", "mgxm")
NOT_AN_IMAGE = b"<!DOCTYPE html><html><body><h1>Access denied</h1></body></html>\n"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ID_ALPHABET = string.ascii_letters + string.digits


def new_file_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(44))


def new_prefix() -> str:
    return secrets.choice(PREFIXES)


@dataclass
class StoredFile:
    key: str
    fmt: str
    width: int
    height: int
    color: int
    expires_at: float
    prediction_id: str
    kind: Literal["image", "not_image", "too_large"] = "image"
    size: int = 0
    chunked: bool = False

    @property
    def content_type(self) -> str:
        return mime_type(self.fmt)

    def content(self) -> bytes:
        if self.kind == "not_image":
            return NOT_AN_IMAGE
        return make_image(self.width, self.height, self.fmt, palette_color(self.color))

    def stream(self, chunk: int = 1024 * 1024) -> Iterator[bytes]:
        """The body of a ``too_large`` file: a PNG signature, then zeros, ``size`` bytes in all."""
        yield PNG_SIGNATURE[: self.size]
        left = self.size - len(PNG_SIGNATURE)
        block = bytes(chunk)
        while left > 0:
            yield block[: min(chunk, left)]
            left -= chunk

    def data_uri(self) -> str:
        return f"data:{self.content_type};base64,{base64.b64encode(self.content()).decode()}"


class FileStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}

    def put(self, stored: StoredFile) -> None:
        with self._lock:
            self._files[stored.key] = stored

    def get(self, key: str, now: float) -> StoredFile | None:
        with self._lock:
            stored = self._files.get(key)
            if stored is not None and now >= stored.expires_at:
                del self._files[key]
                return None
            return stored

    def remove_prediction(self, prediction_id: str) -> None:
        with self._lock:
            for key in [k for k, f in self._files.items() if f.prediction_id == prediction_id]:
                del self._files[key]

    def clear(self) -> int:
        with self._lock:
            count = len(self._files)
            self._files.clear()
            return count

    def __len__(self) -> int:
        return len(self._files)


def build_output(p: Prediction, store: FileStore, ttl: float, data_uris: bool) -> Any:
    """The ``output`` of a prediction that just succeeded; stores the files it points at."""
    model, fault = p.model, p.fault
    name = fault.fault if fault else None
    if model.kind == "text":
        return list(TEXT_CHUNKS)
    count = model.image_count(p.params)
    if name == "nsfw_drop_one":
        count -= 1
    if name == "empty_output":
        count = 0
    if fault is not None and name in ("output_private_url", "output_url"):
        urls = [fault.url or PRIVATE_URL] * max(count, 1)
    else:
        inline = data_uris or name == "output_data_uri"
        urls = [_one_file(p, i, store, ttl, inline) for i in range(count)]
    if model.kind == "images":
        return urls
    return urls[0] if urls else None


def _one_file(p: Prediction, index: int, store: FileStore, ttl: float, inline: bool) -> str:
    width, height = p.model.output_size(p.params)
    fmt = p.model.output_format(p.params)
    fault = p.fault
    name = fault.fault if fault else None
    if fault is not None and name == "output_wrong_size":
        width, height = fault.width or 64, fault.height or 64
    stored = StoredFile(
        key=f"{p.file_prefix}/{p.file_id}/out-{index}.{fmt}",
        fmt=fmt,
        width=width,
        height=height,
        color=p.color + index,
        expires_at=p.finish_at + ttl,
        prediction_id=p.id,
    )
    if fault is not None and name == "output_too_large":
        stored.kind, stored.chunked = "too_large", fault.chunked
        stored.size = LARGE_SIZE if fault.size is None else fault.size
    elif name == "output_not_image":
        stored.kind = "not_image"
    if inline:
        return stored.data_uri()
    if name != "output_404":
        store.put(stored)
    return f"{p.file_base}/delivery/{stored.key}"
