"""``GET /metrics``: Prometheus' text format. Admin keys only, unless
``IMAGEGEN_METRICS_AUTH=none``; absent when ``IMAGEGEN_METRICS_PORT`` serves it on its own
port."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from imagegen.api.deps import ServicesDep, get_principal
from imagegen.errors import NotFound
from imagegen.metrics import CONTENT_TYPE

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(request: Request, services: ServicesDep) -> Response:
    settings = services.settings
    if services.metrics is None or settings.metrics_port is not None:
        raise NotFound("metrics are not served here")
    if settings.metrics_auth == "admin":
        (await get_principal(request)).require_admin()
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE)
