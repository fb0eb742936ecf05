"""Each key's usage today and this month (UTC), for ``imagegen keys list`` and the admin API."""

from __future__ import annotations

from datetime import datetime, timedelta

from imagegen.limits.gate import utc_midnight
from imagegen.usage import GroupBy, UsageQuery, UsageReader, UsageRow


async def usage_by_key(
    usage: UsageReader, now: datetime
) -> tuple[dict[str | None, UsageRow], dict[str | None, UsageRow]]:
    """(today's, this month's) usage by key id."""
    end = now + timedelta(seconds=1)
    today = utc_midnight(now)
    month = today.replace(day=1)
    day_rows = await usage.usage(UsageQuery(today, end, GroupBy.KEY))
    month_rows = await usage.usage(UsageQuery(month, end, GroupBy.KEY))
    return {r.group: r for r in day_rows}, {r.group: r for r in month_rows}
