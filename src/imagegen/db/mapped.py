"""ORM classes over the tables of ``db/tables.py``, for code that wants them (tests, Alembic's
tooling). The store runs Core statements on the tables themselves and never imports this module:
the ORM is a sizeable part of start-up, so ``imagegen serve`` leaves it unloaded.
"""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from imagegen.db.tables import (
    API_KEYS,
    ATTEMPTS,
    DELIVERIES,
    GENERATIONS,
    IMAGES,
    INPUT_IMAGES,
    METADATA,
    PENDING_CREATES,
    PREDICTIONS,
)


class Base(DeclarativeBase):
    metadata = METADATA


class GenerationRow(Base):
    __table__ = GENERATIONS
    metadata_ = GENERATIONS.c.metadata  # ``metadata`` is the declarative base's own


class ApiKeyRow(Base):
    __table__ = API_KEYS


class PredictionRow(Base):
    __table__ = PREDICTIONS


class PendingCreateRow(Base):
    __table__ = PENDING_CREATES


class ImageRow(Base):
    __table__ = IMAGES


class InputImageRow(Base):
    __table__ = INPUT_IMAGES


class WebhookDeliveryRow(Base):
    __table__ = DELIVERIES


class WebhookAttemptRow(Base):
    __table__ = ATTEMPTS
