"""Usage and cost: what a period's generations made and cost, grouped by key, model or day.

A generation's images are those it delivered; ``cost`` sums the known costs (USD) and
``unpriced`` counts the generations whose cost is unknown (no price in the catalog, or the
upstream did not report its billed seconds): unknown costs are never guessed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class GroupBy(enum.StrEnum):
    KEY = "key"
    MODEL = "model"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class UsageRow:
    group: str | None  # the key's id (None: created without a key), the model, or YYYY-MM-DD
    images: int
    generations: int
    failures: int
    cost: float
    unpriced: int


@dataclass(frozen=True, slots=True)
class UsageQuery:
    start: datetime
    end: datetime
    group_by: GroupBy
    owner: str | None = None  # only this key's generations; None: every key's


class UsageReader(Protocol):
    async def usage(self, query: UsageQuery) -> list[UsageRow]: ...


def total(rows: list[UsageRow]) -> UsageRow:
    return UsageRow(
        group=None,
        images=sum(row.images for row in rows),
        generations=sum(row.generations for row in rows),
        failures=sum(row.failures for row in rows),
        cost=sum(row.cost for row in rows),
        unpriced=sum(row.unpriced for row in rows),
    )
