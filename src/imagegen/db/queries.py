"""Statements the store and its leases share: loading generations whole (three statements, however
many generations), and the row count of an UPDATE. Each runs inside a ``Database`` transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from imagegen.db.compiled import Fixed
from imagegen.db.rows import to_generation, to_prediction, to_stored_image
from imagegen.db.tables import GENERATIONS, IMAGES, PREDICTIONS
from imagegen.errors import NotFound
from imagegen.models import Generation, PredictionRecord, StoredImage

log = logging.getLogger(__name__)

_BATCH = 500  # ids per IN (...) list

_PREDICTION_COLUMNS = sa.select(
    PREDICTIONS.c.generation_id,
    PREDICTIONS.c.prediction_id,
    PREDICTIONS.c.inputs,
    PREDICTIONS.c.images_requested,
).order_by(PREDICTIONS.c.id)
_IMAGE_ROWS = sa.select(IMAGES).order_by(IMAGES.c.generation_id, IMAGES.c.position)
# Many ids: an expanding IN list, which SQLAlchemy renders anew on every execution. One id (a
# transition, a GET): plain equality, its SQL compiled once.
_PREDICTIONS_OF = _PREDICTION_COLUMNS.where(
    PREDICTIONS.c.generation_id.in_(sa.bindparam("ids", expanding=True))
)
_PREDICTIONS_OF_ONE = Fixed(
    _PREDICTION_COLUMNS.where(PREDICTIONS.c.generation_id == sa.bindparam("id"))
)
_IMAGES_OF = _IMAGE_ROWS.where(IMAGES.c.generation_id.in_(sa.bindparam("ids", expanding=True)))
_GENERATION = Fixed(sa.select(GENERATIONS).where(GENERATIONS.c.id == sa.bindparam("generation_id")))
_IMAGES_OF_ONE = Fixed(_IMAGE_ROWS.where(IMAGES.c.generation_id == sa.bindparam("id")))


def load_generations(
    connection: sa.Connection,
    stmt: sa.Select[tuple[object, ...]],
    parameters: Mapping[str, Any] | None = None,
) -> list[Generation]:
    """The generations ``stmt`` (a ``select(GENERATIONS)``) finds, with predictions and images."""
    return with_predictions_and_images(connection, connection.execute(stmt, parameters).mappings())


def with_predictions_and_images(
    connection: sa.Connection, found_rows: Iterable[Mapping[Any, Any]]
) -> list[Generation]:
    """The ``generations`` rows found, each with its predictions and images."""
    rows = list(found_rows)
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
    rows = _GENERATION.rows(connection, {"generation_id": generation_id})
    found = with_predictions_and_images(connection, rows)
    if not found:
        raise not_found(generation_id)
    return found[0]


def predictions_of(
    connection: sa.Connection, generation_ids: Sequence[str]
) -> dict[str, list[PredictionRecord]]:
    """Each generation's predictions in the order they were recorded."""
    found: dict[str, list[PredictionRecord]] = {}
    for row in _rows(connection, generation_ids, _PREDICTIONS_OF, _PREDICTIONS_OF_ONE):
        found.setdefault(row["generation_id"], []).append(to_prediction(row))
    return found


def images_of(
    connection: sa.Connection, generation_ids: Sequence[str]
) -> dict[str, list[StoredImage]]:
    """Each generation's stored images in output order."""
    found: dict[str, list[StoredImage]] = {}
    for row in _rows(connection, generation_ids, _IMAGES_OF, _IMAGES_OF_ONE):
        found.setdefault(row["generation_id"], []).append(to_stored_image(row))
    return found


def _rows(
    connection: sa.Connection, generation_ids: Sequence[str], many: sa.Select[Any], one: Fixed
) -> Iterator[Mapping[Any, Any]]:
    """The rows of ``many`` for each batch of ids; ``one`` for a single id."""
    if len(generation_ids) == 1:
        yield from one.rows(connection, {"id": generation_ids[0]})
        return
    for start in range(0, len(generation_ids), _BATCH):
        parameters = {"ids": list(generation_ids[start : start + _BATCH])}
        yield from connection.execute(many, parameters).mappings()


def one_of(column: sa.ColumnElement[Any], values: Sequence[Any]) -> sa.ColumnElement[bool]:
    """``column IN (:a, :b)``, a bound parameter per value: an ``in_`` of plain values is an
    expanding parameter, whose SQL SQLAlchemy renders again on every execution."""
    return column.in_([sa.literal(value, column.type) for value in values])


def rowcount(
    connection: sa.Connection, stmt: sa.Update, parameters: Mapping[str, Any] | None = None
) -> int:
    """Run ``stmt``; how many rows it changed."""
    return int(connection.execute(stmt, parameters).rowcount)


def not_found(generation_id: str) -> NotFound:
    return NotFound(f"generation {generation_id!r} not found")
