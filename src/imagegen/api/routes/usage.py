"""``GET /api/v1/usage``: images, generations, failures and cost over a period, grouped by key,
model or UTC day. Admin keys see every key's; other keys their own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from imagegen.api.deps import AUTHENTICATED, PrincipalDep, ServicesDep
from imagegen.api.key_schemas import Spent, UsageEntry, UsageReport
from imagegen.api.routes.keys import ERRORS, stores
from imagegen.errors import InvalidRequest
from imagegen.limits.gate import utc_midnight
from imagegen.usage import GroupBy, UsageQuery, UsageRow, total

router = APIRouter(prefix="/api/v1/usage", tags=["keys"], dependencies=AUTHENTICATED)


@router.get("", response_model=UsageReport, response_model_by_alias=True, responses=ERRORS)
async def usage(
    services: ServicesDep,
    principal: PrincipalDep,
    start: Annotated[
        datetime | None,
        Query(alias="from", description="Start (inclusive); default: this UTC month's start."),
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description="End (exclusive); default: now.")
    ] = None,
    group_by: GroupBy = GroupBy.KEY,
) -> UsageReport:
    keys, reader = stores(services)
    now = datetime.now(UTC)
    start = _aware(start) if start else utc_midnight(now).replace(day=1)
    end = _aware(end) if end else now
    if end <= start:
        raise InvalidRequest("to: must be after from", field="to")
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
    return value.astimezone(UTC)


def _entry(row: UsageRow, group_by: GroupBy, names: dict[str, str]) -> UsageEntry:
    spent = Spent.of(row).model_dump()
    if group_by is GroupBy.KEY:
        return UsageEntry(**spent, key=names.get(row.group or "", row.group))
    if group_by is GroupBy.MODEL:
        return UsageEntry(**spent, model=row.group)
    return UsageEntry(**spent, day=row.group)
