"""A guarded state transition, as one transaction: one conditional ``UPDATE ... RETURNING``.

The UPDATE applies only while the job is in a state the target may follow
(``... WHERE id = :id AND status IN (:allowed)``), so of two writers racing exactly one wins;
the loser reads the job as the winner left it and raises ``InvalidTransition``. The winner's
job is built from the returned row without reading it again: its images are the ones this
transition writes (only the transition to ``succeeded`` writes images, and it is final, so a job
has none before it), and its predictions are read only when the returned count says it has any.
Webhook messages the transition owes are written in the same transaction. A transition made by
the instance running the job names it (``holder``): it applies only while that instance holds the
job's lease, and raises ``LeaseLost`` when another instance adopted the job (``db/leases.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from imagegen.db.compiled import Fixed
from imagegen.db.queries import load_generation, one_of, predictions_of
from imagegen.db.rows import delivery_values, image_values, to_generation
from imagegen.db.tables import DELIVERIES, GENERATIONS, IMAGES, PREDICTIONS
from imagegen.errors import InvalidTransition, LeaseLost
from imagegen.jobs.records import Outbox
from imagegen.models import Generation, GenerationRequest, JobStatus, PredictionRecord, StoredImage

ALLOWED_FROM: dict[JobStatus, tuple[JobStatus, ...]] = {
    JobStatus.RUNNING: (JobStatus.QUEUED,),
    JobStatus.SUCCEEDED: (JobStatus.RUNNING,),
    JobStatus.FAILED: (JobStatus.QUEUED, JobStatus.RUNNING),
    JobStatus.CANCELED: (JobStatus.QUEUED, JobStatus.RUNNING),
}

# By the bound id rather than correlated: SQLite's RETURNING renders columns unqualified.
_PREDICTION_COUNT = (
    sa.select(sa.func.count())
    .where(PREDICTIONS.c.generation_id == sa.bindparam("generation_id"))
    .scalar_subquery()
    .label("prediction_count")
)
# One statement per target; the SET clause comes from the parameters each execution passes.
_STATEMENTS = {
    target: sa.update(GENERATIONS).where(
        GENERATIONS.c.id == sa.bindparam("generation_id"),
        one_of(GENERATIONS.c.status, [status.value for status in allowed]),
    )
    for target, allowed in ALLOWED_FROM.items()
}
_RETURNED = {
    False: tuple(GENERATIONS.c),
    True: tuple(column for column in GENERATIONS.c if column.key != "request"),
}
# Keyed by (target, fenced, request in hand): with the request in hand its column, a JSON
# document, is not returned (nor decoded, nor the request rebuilt from it).
_UPDATES = {
    (target, fenced, known): Fixed(
        (
            stmt.where(GENERATIONS.c.lease_owner == sa.bindparam("holder")) if fenced else stmt
        ).returning(*_RETURNED[known], _PREDICTION_COUNT)
    )
    for target, stmt in _STATEMENTS.items()
    for fenced in (False, True)
    for known in (False, True)
}
_INSERT_IMAGES = Fixed(sa.insert(IMAGES))
_INSERT_DELIVERIES = Fixed(sa.insert(DELIVERIES))


@dataclass(frozen=True, slots=True)
class Transition:
    """Move ``generation_id`` to ``target`` at ``now``, setting ``values`` (columns besides
    ``status`` and ``updated_at``) and writing ``images`` and the messages ``outbox`` owes.

    Called with a connection inside a write transaction; returns the job as it left it.
    Without images or an outbox it writes with one statement (``one_statement``): then the
    ``Database`` may run it without a transaction around it. ``request``: the job's, in hand
    (a job's request never changes once written), so its column is not read back.
    ``recorded``: predictions of the job recorded new (earlier or in this transaction), in
    the order they were recorded; when they are all the job has, they are the job's
    predictions without reading them back.
    """

    generation_id: str
    target: JobStatus
    now: datetime
    values: Mapping[str, Any]
    images: Sequence[StoredImage] = ()
    outbox: Outbox | None = None
    holder: str | None = None
    request: GenerationRequest | None = None
    recorded: tuple[PredictionRecord, ...] = ()

    @property
    def one_statement(self) -> bool:
        return self.outbox is None and not self.images

    def __call__(self, connection: sa.Connection) -> Generation:
        parameters = {
            **self.values,
            "generation_id": self.generation_id,
            "status": self.target.value,
            "updated_at": self.now,
        }
        fenced, known = self.holder is not None, self.request is not None
        if fenced:
            parameters["holder"] = self.holder
        row = _UPDATES[self.target, fenced, known].first(connection, parameters)
        if row is None:
            current = load_generation(connection, self.generation_id)
            if self.holder is not None and current.status in ALLOWED_FROM[self.target]:
                raise LeaseLost(self.generation_id)  # the state allows it: the lease does not
            raise InvalidTransition(current, self.target)
        if self.images:
            _INSERT_IMAGES.executemany(connection, image_values(self.generation_id, self.images))
        predictions: Sequence[PredictionRecord] = ()
        count = row["prediction_count"]
        if count and count == len(self.recorded):  # its only ones: just recorded, in order
            predictions = self.recorded
        elif count:
            predictions = predictions_of(connection, [self.generation_id])[self.generation_id]
        generation = to_generation(row, predictions, self.images, request=self.request)
        if self.outbox is not None:
            messages = [delivery_values(new, self.now) for new in self.outbox(generation)]
            if messages:
                _INSERT_DELIVERIES.executemany(connection, messages)
        return generation
