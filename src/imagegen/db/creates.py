"""Creates in flight, in SQL: written before an upstream create is sent, cleared in the same
transaction that records its prediction (``imagegen.models.PendingCreate``).

A create whose reply never came (the process died, or the connection did) leaves its row, so
recovery knows to look upstream for the prediction it may have started. Recording a prediction
clears one pending create of its job with the same inputs: creates with equal inputs are
interchangeable, so which one it answers does not matter.

On PostgreSQL the fenced writes of a running job (``begin_create``, ``add_prediction``) are one
statement each, the lease fence a CTE of it (``fenced_cte``): one round trip instead of a
transaction of four or five. Elsewhere they are a transaction: the fence, then the writes.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa

from imagegen.db.compiled import Fixed
from imagegen.db.database import Database
from imagegen.db.leases import fence, fence_refused, fenced_cte
from imagegen.db.queries import one_of
from imagegen.db.rows import prediction_values
from imagegen.db.tables import GENERATIONS, PENDING_CREATES, PREDICTIONS
from imagegen.models import JobStatus, PendingCreate, PredictionRecord

_INSERT = Fixed(sa.insert(PENDING_CREATES))
_OF_GENERATION = Fixed(
    sa.select(PENDING_CREATES)
    .where(PENDING_CREATES.c.generation_id == sa.bindparam("generation_id"))
    .order_by(PENDING_CREATES.c.id)
)
# One statement: the oldest pending create of the job with these inputs, if any.
_OLDEST_OF_DIGEST = (
    sa.select(PENDING_CREATES.c.id)
    .where(
        PENDING_CREATES.c.generation_id == sa.bindparam("generation_id"),
        PENDING_CREATES.c.inputs_digest == sa.bindparam("digest"),
    )
    .order_by(PENDING_CREATES.c.id)
    .limit(1)
    .scalar_subquery()
)
_CLEAR_ONE = Fixed(sa.delete(PENDING_CREATES).where(PENDING_CREATES.c.id == _OLDEST_OF_DIGEST))
# Another unfinished job's create with the same inputs, whose prediction it has not recorded
# (a finished job's leftover row is no create in flight).
_OTHERS_IN_FLIGHT = Fixed(
    sa.select(PENDING_CREATES.c.id)
    .join(GENERATIONS, GENERATIONS.c.id == PENDING_CREATES.c.generation_id)
    .where(
        PENDING_CREATES.c.generation_id != sa.bindparam("generation_id"),
        PENDING_CREATES.c.inputs_digest == sa.bindparam("digest"),
        one_of(GENERATIONS.c.status, [JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
    )
)
_RECORDED = Fixed(
    sa.select(PREDICTIONS.c.id).where(PREDICTIONS.c.prediction_id == sa.bindparam("prediction_id"))
)
_PENDING_COLUMNS = (
    "generation_id", "model", "inputs", "inputs_digest", "images_requested", "sent_at"
)  # fmt: skip
_PREDICTION_COLUMNS = (
    "generation_id", "prediction_id", "inputs", "images_requested", "status", "created_at",
    "updated_at",
)  # fmt: skip


def _from_fenced(fenced: sa.CTE, table: sa.Table, columns: tuple[str, ...]) -> sa.Select[Any]:
    """A row for ``table``: the fenced job's id, then each other column from its parameter,
    named ``new_<column>``. Never the column's own name: SQLAlchemy would add a parameter named
    like a ``generations`` column to the SET clause of the fence."""
    return sa.select(
        fenced.c.id,
        *(sa.bindparam(f"new_{name}", type_=table.c[name].type) for name in columns[1:]),
    )


def _new(values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"new_{name}": value for name, value in values.items()}


def _pg_begin_create(*, extend: bool) -> sa.Insert:
    """PostgreSQL: the pending create, written only while the lease is ``:holder``'s."""
    fenced = fenced_cte(extend=extend)
    row = _from_fenced(fenced, PENDING_CREATES, _PENDING_COLUMNS)
    return sa.insert(PENDING_CREATES).from_select(list(_PENDING_COLUMNS), row)


@functools.cache  # built on first use: SQLite never loads the PostgreSQL dialect
def _pg_add_prediction() -> Fixed:
    """PostgreSQL: the prediction recorded and its pending create cleared, only while the lease
    is ``:holder``'s; the statement returns 1 then, else 0."""
    from sqlalchemy.dialects import postgresql  # not on SQLite's start-up path

    fenced = fenced_cte()
    recorded = (
        postgresql.insert(PREDICTIONS)
        .from_select(
            list(_PREDICTION_COLUMNS), _from_fenced(fenced, PREDICTIONS, _PREDICTION_COLUMNS)
        )
        .on_conflict_do_nothing(index_elements=["generation_id", "prediction_id"])
        .cte("recorded")
    )
    cleared = (
        sa.delete(PENDING_CREATES)
        .where(PENDING_CREATES.c.id == _OLDEST_OF_DIGEST, sa.exists(sa.select(fenced.c.id)))
        .cte("cleared")
    )
    return Fixed(sa.select(sa.func.count()).select_from(fenced).add_cte(recorded, cleared))


_PG_BEGIN_CREATE = {extend: Fixed(_pg_begin_create(extend=extend)) for extend in (False, True)}


class SqlCreates:
    """Pending creates over the store's database; ``GenerationStore`` serves these methods."""

    def __init__(
        self, db: Database, *, clock: Callable[[], datetime], insert_prediction: Fixed
    ) -> None:
        self._db = db
        self._clock = clock
        self._insert_prediction = insert_prediction
        self._one_statement = db.dialect == "postgresql"  # fenced writes as one statement

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
        values = pending_values(generation_id, pending, self._clock())
        if holder is not None and self._one_statement:
            parameters = {**_new(values), "generation_id": generation_id, "holder": holder}
            if until is not None:
                parameters["until"] = until
            stmt = _PG_BEGIN_CREATE[until is not None]
            await self._db.write(
                partial(_fenced, stmt, parameters, generation_id), one_statement=True
            )
            return

        def begin(connection: sa.Connection) -> None:
            if holder is not None:
                fence(connection, generation_id, holder, until)
            _INSERT.execute(connection, values)

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
    ) -> bool:
        """Record ``record`` and clear the pending create it answers, in one transaction
        (``holder``: only while it holds the job's lease). True when this recorded it new;
        False when it was recorded already, or when the one-statement write cannot tell."""
        if holder is not None and self._one_statement:
            parameters = {
                **_new(prediction_values(generation_id, record, self._clock())),
                "generation_id": generation_id,
                "holder": holder,
                "digest": inputs_digest(record.inputs),
            }
            await self._db.write(
                partial(_fenced, _pg_add_prediction(), parameters, generation_id),
                one_statement=True,
            )
            return False

        def add(connection: sa.Connection) -> bool:
            if holder is not None:
                fence(connection, generation_id, holder)
            return self.record(generation_id, record, connection)

        return await self._db.write(add)

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
            if _RECORDED.first(connection, parameters) is not None:
                return False
            if sole:
                others = {"generation_id": generation_id, "digest": inputs_digest(record.inputs)}
                if _OTHERS_IN_FLIGHT.first(connection, others) is not None:
                    return False
            self.record(generation_id, record, connection)
            return True

        return await self._db.write(adopt)

    def record(
        self, generation_id: str, record: PredictionRecord, connection: sa.Connection
    ) -> bool:
        """Record ``record`` and clear the pending create it answers, inside the caller's
        transaction on ``connection`` (no fence: the caller's own write is fenced). True when
        it was new (not recorded already)."""
        values = prediction_values(generation_id, record, self._clock())
        inserted = self._insert_prediction.rowcount(connection, values)
        digest = inputs_digest(record.inputs)
        _CLEAR_ONE.execute(connection, {"generation_id": generation_id, "digest": digest})
        return inserted == 1


def pending_values(generation_id: str, pending: PendingCreate, now: datetime) -> dict[str, Any]:
    """The row of a create about to be sent, sent at ``now``."""
    return {
        "generation_id": generation_id,
        "model": pending.model,
        "inputs": dict(pending.inputs),
        "inputs_digest": inputs_digest(pending.inputs),
        "images_requested": pending.images_requested,
        "sent_at": now,
    }


def insert_pending(connection: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Pending creates (``pending_values``), inside the caller's transaction."""
    _INSERT.executemany(connection, rows)


def inputs_digest(inputs: Mapping[str, Any]) -> str:
    """sha256 of the inputs as canonical JSON: equal inputs, equal digests, on every backend."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _fenced(
    stmt: Fixed,
    parameters: Mapping[str, Any],
    generation_id: str,
    connection: sa.Connection,
) -> None:
    """Run a one-statement fenced write (``_PG_BEGIN_CREATE``, ``_pg_add_prediction()``): it
    wrote nothing unless the fence matched, then say why."""
    ran = stmt.execute(connection, parameters)
    written = next(iter(ran.rows[0].values())) if ran.rows else ran.rowcount
    if written != 1:
        raise fence_refused(connection, generation_id)


def _pending_rows(connection: sa.Connection, generation_id: str) -> list[dict[str, Any]]:
    return _OF_GENERATION.rows(connection, {"generation_id": generation_id})
