"""Replicate's files API, as the double serves it: ``POST /v1/files`` (multipart ``content``,
``type``, ``filename``, ``metadata``), ``GET /v1/files/{id}`` and ``GET /v1/files/{id}/download``.
A file's ``urls.get`` is what predictions accept as an input URL."""

from __future__ import annotations

import hashlib
import json
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from tests.fakes.replicate import problems

_ID_ALPHABET = string.ascii_lowercase + string.digits
FILE_TTL = 24 * 3600.0  # files expire a day after upload


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Upload:
    id: str
    data: bytes
    content_type: str
    filename: str
    metadata: dict[str, Any]
    created: float
    api_base: str

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.filename,
            "content_type": self.content_type,
            "size": len(self.data),
            "etag": hashlib.md5(self.data, usedforsecurity=False).hexdigest(),
            "checksums": {"sha256": hashlib.sha256(self.data).hexdigest()},
            "metadata": self.metadata,
            "created_at": _iso(self.created),
            "expires_at": _iso(self.created + FILE_TTL),
            "urls": {"get": f"{self.api_base}/v1/files/{self.id}"},
        }


@dataclass
class UploadStore:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _files: dict[str, Upload] = field(default_factory=dict)
    created: int = 0

    def add(self, upload: Upload) -> None:
        with self._lock:
            self._files[upload.id] = upload
            self.created += 1

    def get(self, file_id: str) -> Upload | None:
        with self._lock:
            return self._files.get(file_id)

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self.created = 0

    def find_by_url(self, url: str) -> Upload | None:
        """The upload a ``.../v1/files/{id}`` URL names (any host: the double's own)."""
        _, marker, rest = url.partition("/v1/files/")
        return self.get(rest.split("/", 1)[0].split("?", 1)[0]) if marker else None


async def create_file(request: Request, store: UploadStore, api_base: str) -> Response:
    try:
        form = await request.form()
    except Exception:  # python-multipart's errors, or not a form at all
        return problems.bad_request("The request body is not a valid multipart form")
    content = form.get("content")
    if not isinstance(content, UploadFile):
        return problems.bad_request("content is required")
    data = await content.read()
    kind = form.get("type")
    name = form.get("filename") or content.filename or "file"
    raw_metadata = form.get("metadata")
    try:
        metadata = json.loads(raw_metadata) if isinstance(raw_metadata, str) else {}
    except ValueError:
        return problems.bad_request("metadata must be valid JSON")
    upload = Upload(
        id="".join(secrets.choice(_ID_ALPHABET) for _ in range(26)),
        data=data,
        content_type=kind if isinstance(kind, str) else "application/octet-stream",
        filename=str(name),
        metadata=metadata if isinstance(metadata, dict) else {},
        created=time.time(),
        api_base=api_base,
    )
    await form.close()
    store.add(upload)
    return problems.json_response(upload.json(), 201)


def file_not_found() -> Response:
    return problems.problem(404, {"detail": "File not found", "status": 404})


async def get_file(request: Request, store: UploadStore) -> Response:
    upload = store.get(request.path_params["file_id"])
    return file_not_found() if upload is None else problems.json_response(upload.json())


async def download_file(request: Request, store: UploadStore) -> Response:
    upload = store.get(request.path_params["file_id"])
    if upload is None:
        return file_not_found()
    return Response(upload.data, 200, media_type=upload.content_type)
