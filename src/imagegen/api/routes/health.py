"""Liveness and readiness."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from imagegen.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is not usable."}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """The database and the image store are usable, and Redis answers when configured."""
    checks: dict[str, str] = {}
    probes: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("database", services.store.check),
        ("storage", services.image_store.check),
    ]
    if services.redis is not None:
        probes.append(("redis", services.redis.check))
    for name, check in probes:
        try:
            await check()
            checks[name] = "ok"
        except Exception as exc:  # readiness reports any failure rather than raising
            checks[name] = f"error: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
