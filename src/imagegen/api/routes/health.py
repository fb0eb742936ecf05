"""Liveness and readiness."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from imagegen.api.deps import ServicesDep
from imagegen.errors import ImagegenError
from imagegen.storage.faults import check_free_space

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is not usable."}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """Each dependency, probed for real: the database takes a read and a write, the image store
    a write, and the data disks have at least ``IMAGEGEN_MIN_FREE_BYTES`` free."""
    settings = services.settings

    async def disk() -> None:  # the images, and the database when it is SQLite in data_dir
        for folder in (settings.images_dir, settings.data_dir):
            check_free_space(folder, settings.min_free_bytes)

    probes: tuple[tuple[str, Callable[[], Awaitable[None]]], ...] = (
        ("database", services.store.check),
        ("storage", services.image_store.check),
        ("disk", disk),
    )
    checks = {name: await _outcome(probe) for name, probe in probes}
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": "5"},
    )


async def _outcome(probe: Callable[[], Awaitable[None]]) -> str:
    try:
        await probe()
    except ImagegenError as exc:  # imagegen's own messages name the fault, not a secret
        return f"error: {exc}"
    except Exception as exc:  # readiness reports any failure rather than raising
        return f"error: {type(exc).__name__}"
    return "ok"
