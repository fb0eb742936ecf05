"""The persisted schema: generations, the upstream predictions they wait on (and the creates still
in flight), their stored images,
the webhook outbox and its attempts. Declared as ORM classes (Alembic compares them with the
migrations); the store queries the tables underneath with SQLAlchemy Core (``GENERATIONS``...),
and ``rows.py`` maps their rows to the core's frozen values.

``migrations/versions`` must build exactly these tables; ``tests/db/test_migrations.py`` compares
them with Alembic's autogenerate. Change a table here, then add a migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from imagegen.jobs.records import DeliveryStatus
from imagegen.models import JobStatus

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (indexable, compact); JSON text elsewhere.
JSONDocument = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigIntegerPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text, which sorts correctly and is
    read back with ``tzinfo=UTC``. Binding a naive datetime raises ``ValueError``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; imagegen stores timezone-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


_STATUSES = ", ".join(f"'{status.value}'" for status in JobStatus)


class GenerationRow(Base):
    __tablename__ = "generations"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_STATUSES})", name="status"),
        sa.CheckConstraint("images_missing >= 0", name="images_missing"),
        # Keyset pagination, newest first.
        sa.Index("ix_generations_created_at_id", "created_at", "id"),
        # Crash recovery: unfinished jobs, oldest first.
        sa.Index("ix_generations_status_created_at", "status", "created_at"),
        # A key's own history, newest first; its usage and quota since a time.
        sa.Index("ix_generations_owner_created_at_id", "owner", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    model: Mapped[str] = mapped_column(sa.String(255))
    prompt: Mapped[str] = mapped_column(sa.Text)
    provider: Mapped[str] = mapped_column(sa.String(64))
    request: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(sa.Text)
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    images_missing: Mapped[int] = mapped_column(sa.Integer)
    provider_urls: Mapped[list[str]] = mapped_column(JSONDocument)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONDocument)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    request_hash: Mapped[str | None] = mapped_column(sa.String(128))
    webhook_url: Mapped[str | None] = mapped_column(sa.Text)
    webhook_events: Mapped[list[str] | None] = mapped_column(JSONDocument)
    # Which imagegen instance runs the job, until when (crash recovery across replicas).
    lease_owner: Mapped[str | None] = mapped_column(sa.String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The API key that created the job (its id), the images asked for, and what it cost.
    owner: Mapped[str | None] = mapped_column(sa.String(64))
    num_images: Mapped[int | None] = mapped_column(sa.Integer)
    cost: Mapped[float | None] = mapped_column(sa.Float)
    predict_seconds: Mapped[float | None] = mapped_column(sa.Float)


class ApiKeyRow(Base):
    """An API key: only the SHA-256 of the secret is kept; ``prefix`` lets people tell keys
    apart. Revoked keys stay, so their usage keeps a name."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    admin: Mapped[bool] = mapped_column(sa.Boolean)
    rpm: Mapped[int | None] = mapped_column(sa.Integer)
    max_concurrent: Mapped[int | None] = mapped_column(sa.Integer)
    images_per_day: Mapped[int | None] = mapped_column(sa.Integer)
    models: Mapped[list[str] | None] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PredictionRow(Base):
    """An upstream prediction, written before imagegen waits on it."""

    __tablename__ = "predictions"
    __table_args__ = (sa.UniqueConstraint("generation_id", "prediction_id"),)

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    generation_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("generations.id", ondelete="CASCADE")
    )
    prediction_id: Mapped[str] = mapped_column(sa.String(255))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    images_requested: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PendingCreateRow(Base):
    """An upstream create sent (or about to be) whose prediction is not recorded yet: written
    before the create goes out, deleted with the recording of its prediction."""

    __tablename__ = "pending_creates"

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    generation_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("generations.id", ondelete="CASCADE"), index=True
    )
    model: Mapped[str] = mapped_column(sa.String(255))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    # sha256 of the canonical JSON of ``inputs``: recording a prediction clears by it.
    inputs_digest: Mapped[str] = mapped_column(sa.String(64))
    images_requested: Mapped[int] = mapped_column(sa.Integer)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ImageRow(Base):
    """One stored image of a succeeded generation, in output order."""

    __tablename__ = "images"

    generation_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("generations.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    # Indexed so storage clean-up can ask whether a content-addressed key is still referenced.
    key: Mapped[str] = mapped_column(sa.String(512), index=True)
    content_type: Mapped[str] = mapped_column(sa.String(100))
    width: Mapped[int] = mapped_column(sa.Integer)
    height: Mapped[int] = mapped_column(sa.Integer)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    source_url: Mapped[str | None] = mapped_column(sa.Text)
    # The upstream's rewrite of the prompt for this output (OpenAI's dall-e-3), if it made one.
    revised_prompt: Mapped[str | None] = mapped_column(sa.Text)


class InputImageRow(Base):
    """One stored input image of a generation (edits, image-to-image), in request order; the
    mask, if any, comes last with ``role = 'mask'``. The generation's request carries the same
    images for the runner; this table indexes their keys, so storage clean-up can ask whether a
    content-addressed key is still referenced by an input as well as by an output."""

    __tablename__ = "input_images"
    __table_args__ = (sa.CheckConstraint("role IN ('image', 'mask')", name="role"),)

    generation_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("generations.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    key: Mapped[str] = mapped_column(sa.String(512), index=True)
    content_type: Mapped[str] = mapped_column(sa.String(100))
    width: Mapped[int] = mapped_column(sa.Integer)
    height: Mapped[int] = mapped_column(sa.Integer)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    source_url: Mapped[str | None] = mapped_column(sa.Text)


_DELIVERY_STATUSES = ", ".join(f"'{status.value}'" for status in DeliveryStatus)


class WebhookDeliveryRow(Base):
    """A webhook message in the outbox, written in the same transaction as the state change."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_DELIVERY_STATUSES})", name="status"),
        # The worker's scan: pending messages that are due, soonest first.
        sa.Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    generation_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("generations.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(sa.String(32))
    url: Mapped[str] = mapped_column(sa.Text)
    body: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookAttemptRow(Base):
    """One delivery attempt: the receiver's status code, or the error that prevented one."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    error: Mapped[str | None] = mapped_column(sa.Text)
    delivered: Mapped[bool] = mapped_column(sa.Boolean)


# The tables themselves, for Core statements (no unit of work, no identity map).
GENERATIONS = cast(sa.Table, GenerationRow.__table__)
PREDICTIONS = cast(sa.Table, PredictionRow.__table__)
PENDING_CREATES = cast(sa.Table, PendingCreateRow.__table__)
IMAGES = cast(sa.Table, ImageRow.__table__)
INPUT_IMAGES = cast(sa.Table, InputImageRow.__table__)
DELIVERIES = cast(sa.Table, WebhookDeliveryRow.__table__)
ATTEMPTS = cast(sa.Table, WebhookAttemptRow.__table__)
API_KEYS = cast(sa.Table, ApiKeyRow.__table__)
