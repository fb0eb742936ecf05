"""Aggregates over ``generations`` by owner: usage reports and the load the per-key limits
check (``limits/gate.py``). One statement each, on the ``owner, created_at`` index."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa

from imagegen.db.database import Database
from imagegen.db.queries import one_of
from imagegen.db.tables import GENERATIONS, UTCDateTime
from imagegen.limits.gate import KeyLoad
from imagegen.models import JobStatus
from imagegen.usage import GroupBy, UsageQuery, UsageRow

G = GENERATIONS.c
_ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
_ASKED = sa.func.coalesce(G.num_images, 0)
_DELIVERED = sa.case(
    (G.status == JobStatus.SUCCEEDED.value, _ASKED - G.images_missing),
    else_=0,
)
_IS_ACTIVE = one_of(G.status, _ACTIVE)
_COUNTED = sa.case(
    (_IS_ACTIVE, _ASKED),
    (G.status == JobStatus.SUCCEEDED.value, _ASKED - G.images_missing),
    else_=0,
)
_SINCE = sa.bindparam("since", type_=UTCDateTime())
# Built once (it runs on every request of a key with limits).
_KEY_LOAD = sa.select(
    sa.func.count().filter(_IS_ACTIVE),
    sa.func.coalesce(sa.func.sum(_COUNTED).filter(G.created_at >= _SINCE), 0),
).where(G.owner == sa.bindparam("owner"), sa.or_(G.created_at >= _SINCE, _IS_ACTIVE))


class SqlUsage:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def key_load(self, owner: str, since: datetime) -> KeyLoad:
        parameters = {"owner": owner, "since": since}
        row: Any = await self._db.read(partial(_one, _KEY_LOAD, parameters))
        return KeyLoad(active=int(row[0]), images_today=int(row[1]))

    async def usage(self, query: UsageQuery) -> list[UsageRow]:
        group = self._group(query.group_by).label("grp")
        stmt = (
            sa.select(
                group,
                sa.func.coalesce(sa.func.sum(_DELIVERED), 0),
                sa.func.count(),
                sa.func.count().filter(G.status == JobStatus.FAILED.value),
                sa.func.coalesce(sa.func.sum(G.cost), 0.0),
                sa.func.count().filter(G.cost.is_(None)),
            )
            .where(
                G.created_at >= sa.literal(query.start, UTCDateTime()),
                G.created_at < sa.literal(query.end, UTCDateTime()),
            )
            .group_by(group)
            .order_by(group)
        )
        if query.owner is not None:
            stmt = stmt.where(G.owner == query.owner)
        rows: list[Any] = await self._db.read(partial(_all, stmt))
        return [
            UsageRow(
                group=None if row[0] is None else str(row[0]),
                images=int(row[1]),
                generations=int(row[2]),
                failures=int(row[3]),
                cost=float(row[4]),
                unpriced=int(row[5]),
            )
            for row in rows
        ]

    def _group(self, group_by: GroupBy) -> sa.ColumnElement[Any]:
        if group_by is GroupBy.KEY:
            return G.owner
        if group_by is GroupBy.MODEL:
            return G.model
        if self._db.dialect == "postgresql":
            return sa.func.to_char(sa.func.timezone("UTC", G.created_at), "YYYY-MM-DD")
        return sa.func.substr(G.created_at, 1, 10)  # SQLite keeps UTC text: YYYY-MM-DD ...


def _one(
    stmt: sa.Select[Any], parameters: dict[str, Any], connection: sa.Connection
) -> sa.Row[Any]:
    return connection.execute(stmt, parameters).one()


def _all(stmt: sa.Select[Any], connection: sa.Connection) -> list[Any]:
    return list(connection.execute(stmt).all())
