"""The history of generations: ``GET /api/v1/generations[/{id}]``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from imagegen.api.deps import BaseUrlDep, ServicesDep
from imagegen.api.schemas import ErrorResponse, GenerationInfo, GenerationPage, generation_info

router = APIRouter(prefix="/api/v1/generations", tags=["generations"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}


@router.get("/{generation_id}", response_model=GenerationInfo, responses=NOT_FOUND)
async def get_generation(
    generation_id: str, services: ServicesDep, base_url: BaseUrlDep
) -> GenerationInfo:
    generation = await services.store.get(generation_id)
    return generation_info(generation, base_url)


@router.get("", response_model=GenerationPage, responses={400: {"model": ErrorResponse}})
async def list_generations(
    services: ServicesDep,
    base_url: BaseUrlDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> GenerationPage:
    items, next_cursor = await services.store.list(limit=limit, cursor=cursor)
    return GenerationPage(
        data=[generation_info(item, base_url) for item in items], next_cursor=next_cursor
    )
