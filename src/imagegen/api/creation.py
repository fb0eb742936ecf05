"""What every create endpoint does: idempotency, submit, then wait (sync) or return (async)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from imagegen.api.deps import Services
from imagegen.api.waiting import wait_for_job
from imagegen.errors import InvalidRequest
from imagegen.jobs.protocols import Idempotency
from imagegen.models import Generation, GenerationRequest

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as the IETF draft's examples


@dataclass(frozen=True, slots=True)
class Created:
    """A created (or replayed) job; ``finished`` is False when the client asked for async."""

    generation: Generation
    finished: bool


def idempotency_of(request: Request, scope: str, body: Mapping[str, Any]) -> Idempotency | None:
    """The request's ``Idempotency-Key``, bound to a digest of the endpoint and body."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _KEY.match(key):
        raise InvalidRequest(
            "Idempotency-Key: must be 1 to 255 visible ASCII characters", field="Idempotency-Key"
        )
    canonical = json.dumps({"scope": scope, "body": body}, sort_keys=True, separators=(",", ":"))
    return Idempotency(key=key, request_hash=hashlib.sha256(canonical.encode()).hexdigest())


def wants_async(request: Request) -> bool:
    """``Prefer: respond-async`` (RFC 7240), as cog and Replicate's own API use it."""
    for header in request.headers.getlist("prefer"):
        for preference in header.split(","):
            if preference.split(";", 1)[0].strip().lower() == "respond-async":
                return True
    return False


async def create(
    services: Services,
    request: Request,
    generation_request: GenerationRequest,
    *,
    scope: str,
    body: Mapping[str, Any],
) -> Created:
    job = await services.runner.submit(
        generation_request, idempotency=idempotency_of(request, scope, body)
    )
    if wants_async(request):
        return Created(job, finished=False)
    return Created(await wait_for_job(services.runner, job.id, request), finished=True)
