"""Statements the store and its leases share: loading generations whole (three statements, however
many generations), and the row count of an UPDATE. Each runs inside a ``Database`` transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from imagegen.db.rows import to_generation, to_prediction, to_stored_image
from imagegen.db.tables import GENERATIONS, IMAGES, PREDICTIONS
from imagegen.errors import NotFound
from imagegen.models import Generation, PredictionRecord, StoredImage

log = logging.getLogger(__name__)

_BATCH = 500  # ids per IN (...) list

_PREDICTIONS_OF = (
    sa.select(
        PREDICTIONS.c.generation_id,
        PREDICTIONS.c.prediction_id,
        PREDICTIONS.c.inputs,
        PREDICTIONS.c.images_requested,
    )
    .where(PREDICTIONS.c.generation_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(PREDICTIONS.c.id)
)
_IMAGES_OF = (
    sa.select(IMAGES)
    .where(IMAGES.c.generation_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(IMAGES.c.generation_id, IMAGES.c.position)
)


def load_generations(
    connection: sa.Connection, stmt: sa.Select[tuple[object, ...]]
) -> list[Generation]:
    """The generations ``stmt`` (a ``select(GENERATIONS)``) finds, with predictions and images."""
    rows = connection.execute(stmt).mappings().all()
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    predictions = predictions_of(connection, ids)
    images = images_of(connection, ids)
    found = []
    for row in rows:
        try:
            found.append(
                to_generation(row, predictions.get(row["id"], ()), images.get(row["id"], ()))
            )
        except (KeyError, TypeError, ValueError) as exc:
            # One damaged record (written by an older imagegen, or by hand) must not make the
            # whole history unreadable: it is left out, and said so.
            log.warning("generation %r cannot be read and is left out: %r", row["id"], exc)
    return found


def load_generation(connection: sa.Connection, generation_id: str) -> Generation:
    """One generation, whole; ``NotFound`` when there is none."""
    found = load_generations(
        connection, sa.select(GENERATIONS).where(GENERATIONS.c.id == generation_id)
    )
    if not found:
        raise not_found(generation_id)
    return found[0]


def predictions_of(
    connection: sa.Connection, generation_ids: Sequence[str]
) -> dict[str, list[PredictionRecord]]:
    """Each generation's predictions in the order they were recorded."""
    found: dict[str, list[PredictionRecord]] = {}
    for start in range(0, len(generation_ids), _BATCH):
        batch = list(generation_ids[start : start + _BATCH])
        for row in connection.execute(_PREDICTIONS_OF, {"ids": batch}).mappings():
            found.setdefault(row["generation_id"], []).append(to_prediction(row))
    return found


def images_of(
    connection: sa.Connection, generation_ids: Sequence[str]
) -> dict[str, list[StoredImage]]:
    """Each generation's stored images in output order."""
    found: dict[str, list[StoredImage]] = {}
    for start in range(0, len(generation_ids), _BATCH):
        batch = list(generation_ids[start : start + _BATCH])
        for row in connection.execute(_IMAGES_OF, {"ids": batch}).mappings():
            found.setdefault(row["generation_id"], []).append(to_stored_image(row))
    return found


def rowcount(
    connection: sa.Connection, stmt: sa.Update, parameters: Mapping[str, Any] | None = None
) -> int:
    """Run ``stmt``; how many rows it changed."""
    return int(connection.execute(stmt, parameters).rowcount)


def not_found(generation_id: str) -> NotFound:
    return NotFound(f"generation {generation_id!r} not found")
