"""``GET /api/v1/usage``: images, generations, failures and cost over a period, grouped by key,
model or UTC day. Admin keys see every key's; other keys their own."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from imagegen.api.deps import AUTHENTICATED, PrincipalDep, ServicesDep
from imagegen.api.key_schemas import Spent, UsageEntry, UsageReport
from imagegen.api.routes.keys import ERRORS, stores
from imagegen.limits.gate import utc_midnight
from imagegen.usage import GroupBy, UsageQuery, UsageRow, total

_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")


def _not_a_number(value: object) -> object:
    """A time is an ISO 8601 string (or a date), not a Unix timestamp pydantic would take."""
    if isinstance(value, str) and _NUMBER.match(value):
        raise ValueError("expected an ISO 8601 date or time, e.g. 2026-11-01 or 2026-11-01T00:00Z")
    return value


router = APIRouter(prefix="/api/v1/usage", tags=["keys"], dependencies=AUTHENTICATED)


@router.get("", response_model=UsageReport, response_model_by_alias=True, responses=ERRORS)
async def usage(
    services: ServicesDep,
    principal: PrincipalDep,
    start: Annotated[
        datetime | None,
        Query(alias="from", description="Start (inclusive); default: this UTC month's start."),
        BeforeValidator(_not_a_number),
    ] = None,
    end: Annotated[
        datetime | None,
        Query(alias="to", description="End (exclusive); default: now."),
        BeforeValidator(_not_a_number),
    ] = None,
    group_by: GroupBy = GroupBy.KEY,
) -> UsageReport:
    keys, reader = stores(services)
    now = datetime.now(UTC)
    start = _aware(start) if start else utc_midnight(now).replace(day=1)
    end = _aware(end) if end else now
    rows = []  # an empty period (to at or before from) used nothing
    if end > start:
        rows = await reader.usage(UsageQuery(start, end, group_by, owner=principal.sees))
    names = {key.id: key.name for key in await keys.list()} if group_by is GroupBy.KEY else {}
    return UsageReport(
        start=start,
        end=end,
        group_by=group_by.value,
        data=[_entry(row, group_by, names) for row in rows],
        total=Spent.of(total(rows)),
    )


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # a date or naive time means UTC
    try:
        return value.astimezone(UTC)
    except OverflowError:  # within a day of year 1 or 9999: as far as time goes
        return (datetime.max if value.year > 1 else datetime.min).replace(tzinfo=UTC)


def _entry(row: UsageRow, group_by: GroupBy, names: dict[str, str]) -> UsageEntry:
    spent = Spent.of(row).model_dump()
    if group_by is GroupBy.KEY:
        return UsageEntry(**spent, key=names.get(row.group or "", row.group))
    if group_by is GroupBy.MODEL:
        return UsageEntry(**spent, model=row.group)
    return UsageEntry(**spent, day=row.group)
