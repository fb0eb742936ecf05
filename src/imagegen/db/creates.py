"""Creates in flight, in SQL: written before an upstream create is sent, cleared in the same
transaction that records its prediction (``imagegen.models.PendingCreate``).

A create whose reply never came (the process died, or the connection did) leaves its row, so
recovery knows to look upstream for the prediction it may have started. Recording a prediction
clears one pending create of its job with the same inputs: creates with equal inputs are
interchangeable, so which one it answers does not matter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa

from imagegen.db.database import Database
from imagegen.db.leases import fence
from imagegen.db.rows import prediction_values
from imagegen.db.tables import GENERATIONS, PENDING_CREATES, PREDICTIONS
from imagegen.models import JobStatus, PendingCreate, PredictionRecord

_INSERT = sa.insert(PENDING_CREATES)
_OF_GENERATION = (
    sa.select(PENDING_CREATES)
    .where(PENDING_CREATES.c.generation_id == sa.bindparam("generation_id"))
    .order_by(PENDING_CREATES.c.id)
)
# One statement: the oldest pending create of the job with these inputs, if any.
_CLEAR_ONE = sa.delete(PENDING_CREATES).where(
    PENDING_CREATES.c.id
    == sa.select(PENDING_CREATES.c.id)
    .where(
        PENDING_CREATES.c.generation_id == sa.bindparam("generation_id"),
        PENDING_CREATES.c.inputs_digest == sa.bindparam("digest"),
    )
    .order_by(PENDING_CREATES.c.id)
    .limit(1)
    .scalar_subquery()
)
# Another unfinished job's create with the same inputs, whose prediction it has not recorded
# (a finished job's leftover row is no create in flight).
_OTHERS_IN_FLIGHT = (
    sa.select(PENDING_CREATES.c.id)
    .join(GENERATIONS, GENERATIONS.c.id == PENDING_CREATES.c.generation_id)
    .where(
        PENDING_CREATES.c.generation_id != sa.bindparam("generation_id"),
        PENDING_CREATES.c.inputs_digest == sa.bindparam("digest"),
        GENERATIONS.c.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
    )
)
_RECORDED = sa.select(PREDICTIONS.c.id).where(
    PREDICTIONS.c.prediction_id == sa.bindparam("prediction_id")
)


class SqlCreates:
    """Pending creates over the store's database; ``GenerationStore`` serves these methods."""

    def __init__(
        self, db: Database, *, clock: Callable[[], datetime], insert_prediction: sa.Insert
    ) -> None:
        self._db = db
        self._clock = clock
        self._insert_prediction = insert_prediction

    async def begin_create(
        self,
        generation_id: str,
        pending: PendingCreate,
        *,
        holder: str | None = None,
        until: datetime | None = None,
    ) -> None:
        """Record that a create with these inputs is about to be sent (``sent_at``: now);
        ``holder``: only while it holds the job's lease, extended to ``until``."""
        values = {
            "generation_id": generation_id,
            "model": pending.model,
            "inputs": dict(pending.inputs),
            "inputs_digest": inputs_digest(pending.inputs),
            "images_requested": pending.images_requested,
            "sent_at": self._clock(),
        }

        def begin(connection: sa.Connection) -> None:
            if holder is not None:
                fence(connection, generation_id, holder, until)
            connection.execute(_INSERT, values)

        await self._db.write(begin)

    async def pending_creates(self, generation_id: str) -> list[PendingCreate]:
        """The job's creates whose prediction is not recorded, oldest first."""
        rows = await self._db.read(partial(_pending_rows, generation_id=generation_id))
        return [
            PendingCreate(row["model"], row["inputs"], row["images_requested"], row["sent_at"])
            for row in rows
        ]

    async def add_prediction(
        self, generation_id: str, record: PredictionRecord, *, holder: str | None = None
    ) -> None:
        """Record ``record`` and clear the pending create it answers, in one transaction
        (``holder``: only while it holds the job's lease)."""

        def add(connection: sa.Connection) -> None:
            if holder is not None:
                fence(connection, generation_id, holder)
            self._record(generation_id, record, connection)

        await self._db.write(add)

    async def adopt_prediction(
        self,
        generation_id: str,
        record: PredictionRecord,
        *,
        sole: bool = False,
        holder: str | None = None,
    ) -> bool:
        """Record an orphan found upstream as this job's, unless a job records it already;
        ``sole``: also unless another job has a create with the same inputs in flight (then
        the orphan may be that one's)."""

        def adopt(connection: sa.Connection) -> bool:
            if holder is not None:
                fence(connection, generation_id, holder)
            parameters = {"prediction_id": record.prediction_id}
            if connection.execute(_RECORDED, parameters).first() is not None:
                return False
            if sole:
                others = {"generation_id": generation_id, "digest": inputs_digest(record.inputs)}
                if connection.execute(_OTHERS_IN_FLIGHT, others).first() is not None:
                    return False
            self._record(generation_id, record, connection)
            return True

        return await self._db.write(adopt)

    def _record(
        self, generation_id: str, record: PredictionRecord, connection: sa.Connection
    ) -> None:
        values = prediction_values(generation_id, record, self._clock())
        connection.execute(self._insert_prediction, values)
        digest = inputs_digest(record.inputs)
        connection.execute(_CLEAR_ONE, {"generation_id": generation_id, "digest": digest})


def inputs_digest(inputs: Mapping[str, Any]) -> str:
    """sha256 of the inputs as canonical JSON: equal inputs, equal digests, on every backend."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _pending_rows(connection: sa.Connection, generation_id: str) -> list[sa.RowMapping]:
    return list(connection.execute(_OF_GENERATION, {"generation_id": generation_id}).mappings())
