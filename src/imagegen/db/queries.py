"""Statement helpers shared by the store and its leases: a generation loaded whole, and the row
count of an UPDATE."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from imagegen.db.tables import GenerationRow


def select_generations() -> sa.Select[GenerationRow]:
    """Generation rows with their predictions and images loaded (``to_generation`` needs both)."""
    return sa.select(GenerationRow).options(
        selectinload(GenerationRow.predictions), selectinload(GenerationRow.images)
    )


async def rowcount(session: AsyncSession, stmt: sa.Update) -> int:
    """Run ``stmt`` in ``session``; how many rows it changed."""
    result = await session.execute(stmt.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]  # a CursorResult for UPDATE
