"""Generations as jobs: ``GET /api/v1/generations[/{id}]``, ``POST .../{id}/cancel`` and the
event stream ``GET .../{id}/events`` (server-sent events).

A key sees only the generations it created: another key's is a 404, exactly as an unknown id
(a 403 would confirm that it exists). Admin keys see every generation."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from imagegen.api.deps import AUTHENTICATED, BaseUrlDep, PrincipalDep, Services, ServicesDep
from imagegen.api.schemas import ErrorResponse, GenerationInfo, GenerationPage, generation_info
from imagegen.auth.principal import Principal
from imagegen.errors import NotFound
from imagegen.jobs.follow import Update, follow
from imagegen.models import Generation

router = APIRouter(prefix="/api/v1/generations", tags=["generations"], dependencies=AUTHENTICATED)

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {}},
        "description": "Server-sent events: `state` (the job, first as it is now), `progress` "
        '(`{"progress": 0.42}`), and a final `done` (the job in its final state); '
        "`: keep-alive` comments in between.",
    },
    **NOT_FOUND,
}


async def owned(services: Services, principal: Principal, generation_id: str) -> Generation:
    """The generation, if ``principal`` may see it; ``NotFound`` otherwise."""
    generation = await services.store.get(generation_id)
    if not principal.may_see(generation):
        raise NotFound(f"generation {generation_id!r} not found")
    return generation


async def _info(services: Services, generation: Generation, base_url: str) -> GenerationInfo:
    attempts = await services.store.outbox.attempts([generation.id])
    return generation_info(
        generation,
        base_url,
        progress=services.runner.progress(generation.id),
        attempts=attempts.get(generation.id, ()),
    )


@router.get("/{generation_id}", response_model=GenerationInfo, responses=NOT_FOUND)
async def get_generation(
    generation_id: str, services: ServicesDep, base_url: BaseUrlDep, principal: PrincipalDep
) -> GenerationInfo:
    return await _info(services, await owned(services, principal, generation_id), base_url)


@router.post(
    "/{generation_id}/cancel",
    response_model=GenerationInfo,
    responses=NOT_FOUND,
    summary="Cancel a generation and its upstream predictions",
)
async def cancel_generation(
    generation_id: str, services: ServicesDep, base_url: BaseUrlDep, principal: PrincipalDep
) -> GenerationInfo:
    """Queued or running: it becomes ``canceled`` (its predictions are canceled upstream).
    Already finished: returned unchanged."""
    await owned(services, principal, generation_id)
    return await _info(services, await services.runner.cancel(generation_id), base_url)


@router.get(
    "/{generation_id}/events",
    response_class=StreamingResponse,
    responses=EVENT_STREAM,
    summary="Follow a generation: state changes and progress as server-sent events",
)
async def generation_events(
    generation_id: str, services: ServicesDep, base_url: BaseUrlDep, principal: PrincipalDep
) -> StreamingResponse:
    await owned(services, principal, generation_id)  # a 404, not an empty stream
    updates = follow(
        services.store,
        services.runner.events,
        generation_id,
        heartbeat=services.settings.sse_heartbeat,
    )
    return StreamingResponse(
        _sse(generation_id, updates, services, base_url),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(
    generation_id: str, updates: AsyncIterator[Update], services: Services, base_url: str
) -> AsyncIterator[str]:
    ids = itertools.count(1)
    async for update in updates:
        if update.kind == "heartbeat":
            yield ": keep-alive\n\n"
            continue
        if update.generation is not None:
            data = (await _info(services, update.generation, base_url)).model_dump_json()
        else:
            data = json.dumps(
                {"id": generation_id, "progress": update.progress}, separators=(",", ":")
            )
        yield f"id: {next(ids)}\nevent: {update.kind}\ndata: {data}\n\n"


@router.get("", response_model=GenerationPage, responses={400: {"model": ErrorResponse}})
async def list_generations(
    services: ServicesDep,
    base_url: BaseUrlDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> GenerationPage:
    """Newest first: the key's own generations (an admin key's view: everyone's)."""
    items, next_cursor = await services.store.list(limit=limit, cursor=cursor, owner=principal.sees)
    attempts = await services.store.outbox.attempts([item.id for item in items])
    data = [
        generation_info(
            item,
            base_url,
            progress=services.runner.progress(item.id),
            attempts=attempts.get(item.id, ()),
        )
        for item in items
    ]
    return GenerationPage(data=data, next_cursor=next_cursor)
