"""The persisted schema: generations, the upstream predictions they wait on (and the creates still
in flight), their stored images,
the webhook outbox and its attempts, as SQLAlchemy Core tables (``GENERATIONS``...) on
``METADATA``; ``rows.py`` maps their rows to the core's frozen values. The store needs no ORM, so
none is imported; ORM classes over the same tables (``GenerationRow``...) are in ``db/mapped.py``,
loaded when first named here.

``migrations/versions`` must build exactly these tables; ``tests/db/test_migrations.py`` compares
them with Alembic's autogenerate. Change a table here, then add a migration.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from imagegen.jobs.records import DeliveryStatus
from imagegen.models import JobStatus

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class JSONDocument(sa.TypeDecorator[Any]):
    """JSONB on PostgreSQL (indexable, compact); JSON text elsewhere. PostgreSQL's type comes
    with its dialect, so a SQLite start-up does not import that dialect."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(sa.JSON())


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

    # On SQLite each conversion is one function, not SQLAlchemy's two (``process_bind_param``,
    # then the dialect's DATETIME formatting; its parsing, then ``process_result_value``): a
    # job's statements bind and read a dozen timestamps. Same text, same values
    # (``tests/db/test_rows.py`` compares them with SQLAlchemy's own).

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_bind

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _sqlite_result


def _sqlite_bind(value: datetime | None) -> str | None:
    """What SQLite's DATETIME stores (``YYYY-MM-DD HH:MM:SS.ffffff``) of the UTC time ``value``.
    A write binds one ``now`` to several columns: the last time converted is converted once."""
    global _last_bound
    if value is None:
        return None
    last = _last_bound
    if value is last[0]:  # datetimes never change: the same object, the same text
        return last[1]
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}; imagegen stores timezone-aware times")
    # Python's years have four digits: the text before the offset is always 26 characters.
    text = value.astimezone(UTC).isoformat(" ", "microseconds")[:26]
    _last_bound = (value, text)  # one assignment: a reader on another thread sees a pair
    return text


_last_bound: tuple[datetime | None, str] = (None, "")


def _sqlite_result(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = _from_text(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


_from_text = datetime.fromisoformat  # what SQLAlchemy's SQLite DATETIME parses with


METADATA = sa.MetaData(naming_convention=NAMING_CONVENTION)

_STATUSES = ", ".join(f"'{status.value}'" for status in JobStatus)


def _column(name: str, type_: Any, *args: Any, null: bool = False, **kwargs: Any) -> sa.Column[Any]:
    """A column, NOT NULL unless ``null``."""
    return sa.Column(name, type_, *args, nullable=null, **kwargs)


def _generation_id(*, primary_key: bool = False, index: bool | None = None) -> sa.Column[Any]:
    """The generation a row belongs to; deleted with it."""
    reference = sa.ForeignKey("generations.id", ondelete="CASCADE")
    return _column("generation_id", sa.String(64), reference, primary_key=primary_key, index=index)


GENERATIONS = sa.Table(
    "generations",
    METADATA,
    _column("id", sa.String(64), primary_key=True),
    _column("status", sa.String(16)),
    _column("model", sa.String(255)),
    _column("prompt", sa.Text),
    _column("provider", sa.String(64)),
    _column("request", JSONDocument),
    _column("created_at", UTCDateTime),
    _column("updated_at", UTCDateTime),
    _column("started_at", UTCDateTime, null=True),
    _column("completed_at", UTCDateTime, null=True),
    _column("deadline_at", UTCDateTime, null=True),
    _column("error", sa.Text, null=True),
    _column("error_code", sa.String(64), null=True),
    _column("images_missing", sa.Integer),
    _column("provider_urls", JSONDocument),
    _column("metadata", JSONDocument),
    _column("idempotency_key", sa.String(255), null=True, unique=True),
    _column("request_hash", sa.String(128), null=True),
    _column("webhook_url", sa.Text, null=True),
    _column("webhook_events", JSONDocument, null=True),
    # Which imagegen instance runs the job, until when (crash recovery across replicas).
    _column("lease_owner", sa.String(128), null=True),
    _column("lease_expires_at", UTCDateTime, null=True),
    # The API key that created the job (its id), the images asked for, and what it cost.
    _column("owner", sa.String(64), null=True),
    _column("num_images", sa.Integer, null=True),
    _column("cost", sa.Float, null=True),
    _column("predict_seconds", sa.Float, null=True),
    sa.CheckConstraint(f"status IN ({_STATUSES})", name="status"),
    sa.CheckConstraint("images_missing >= 0", name="images_missing"),
    # Keyset pagination, newest first.
    sa.Index("ix_generations_created_at_id", "created_at", "id"),
    # Crash recovery: unfinished jobs, oldest first.
    sa.Index("ix_generations_status_created_at", "status", "created_at"),
    # A key's own history, newest first; its usage and quota since a time.
    sa.Index("ix_generations_owner_created_at_id", "owner", "created_at", "id"),
)

# An API key: only the SHA-256 of the secret is kept; ``prefix`` lets people tell keys apart.
# Revoked keys stay, so their usage keeps a name.
API_KEYS = sa.Table(
    "api_keys",
    METADATA,
    _column("id", sa.String(64), primary_key=True),
    _column("name", sa.String(100), unique=True),
    _column("prefix", sa.String(16)),
    _column("key_hash", sa.String(64), unique=True),
    _column("admin", sa.Boolean),
    _column("rpm", sa.Integer, null=True),
    _column("max_concurrent", sa.Integer, null=True),
    _column("images_per_day", sa.Integer, null=True),
    _column("models", JSONDocument, null=True),
    _column("created_at", UTCDateTime),
    _column("last_used_at", UTCDateTime, null=True),
    _column("revoked_at", UTCDateTime, null=True),
)

# An upstream prediction, written before imagegen waits on it.
PREDICTIONS = sa.Table(
    "predictions",
    METADATA,
    _column("id", BigIntegerPK, primary_key=True, autoincrement=True),
    _generation_id(),
    _column("prediction_id", sa.String(255)),
    _column("inputs", JSONDocument),
    _column("images_requested", sa.Integer),
    _column("status", sa.String(32)),
    _column("created_at", UTCDateTime),
    _column("updated_at", UTCDateTime),
    sa.UniqueConstraint("generation_id", "prediction_id"),
)

# An upstream create sent (or about to be) whose prediction is not recorded yet: written before
# the create goes out, deleted with the recording of its prediction.
PENDING_CREATES = sa.Table(
    "pending_creates",
    METADATA,
    _column("id", BigIntegerPK, primary_key=True, autoincrement=True),
    _generation_id(index=True),
    _column("model", sa.String(255)),
    _column("inputs", JSONDocument),
    # sha256 of the canonical JSON of ``inputs``: recording a prediction clears by it.
    _column("inputs_digest", sa.String(64)),
    _column("images_requested", sa.Integer),
    _column("sent_at", UTCDateTime),
)

# One stored image of a succeeded generation, in output order.
IMAGES = sa.Table(
    "images",
    METADATA,
    _generation_id(primary_key=True),
    _column("position", sa.Integer, primary_key=True),
    # Indexed so storage clean-up can ask whether a content-addressed key is still referenced.
    _column("key", sa.String(512), index=True),
    _column("content_type", sa.String(100)),
    _column("width", sa.Integer),
    _column("height", sa.Integer),
    _column("size_bytes", sa.BigInteger),
    _column("source_url", sa.Text, null=True),
    # The upstream's rewrite of the prompt for this output (OpenAI's dall-e-3), if it made one.
    _column("revised_prompt", sa.Text, null=True),
)

# One stored input image of a generation (edits, image-to-image), in request order; the mask,
# if any, comes last with ``role = 'mask'``. The generation's request carries the same images
# for the runner; this table indexes their keys, so storage clean-up can ask whether a
# content-addressed key is still referenced by an input as well as by an output.
INPUT_IMAGES = sa.Table(
    "input_images",
    METADATA,
    _generation_id(primary_key=True),
    _column("position", sa.Integer, primary_key=True),
    _column("role", sa.String(16)),
    _column("key", sa.String(512), index=True),
    _column("content_type", sa.String(100)),
    _column("width", sa.Integer),
    _column("height", sa.Integer),
    _column("size_bytes", sa.BigInteger),
    _column("source_url", sa.Text, null=True),
    sa.CheckConstraint("role IN ('image', 'mask')", name="role"),
)

_DELIVERY_STATUSES = ", ".join(f"'{status.value}'" for status in DeliveryStatus)

# A webhook message in the outbox, written in the same transaction as the state change.
DELIVERIES = sa.Table(
    "webhook_deliveries",
    METADATA,
    _column("id", sa.String(64), primary_key=True),
    _generation_id(index=True),
    _column("event", sa.String(32)),
    _column("url", sa.Text),
    _column("body", sa.Text),
    _column("status", sa.String(16)),
    _column("attempts", sa.Integer),
    _column("created_at", UTCDateTime),
    _column("updated_at", UTCDateTime),
    _column("next_attempt_at", UTCDateTime),
    _column("delivered_at", UTCDateTime, null=True),
    sa.CheckConstraint(f"status IN ({_DELIVERY_STATUSES})", name="status"),
    # The worker's scan: pending messages that are due, soonest first.
    sa.Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
)

# One delivery attempt: the receiver's status code, or the error that prevented one.
ATTEMPTS = sa.Table(
    "webhook_attempts",
    METADATA,
    _column("id", BigIntegerPK, primary_key=True, autoincrement=True),
    _column(
        "delivery_id",
        sa.String(64),
        sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        index=True,
    ),
    _column("attempted_at", UTCDateTime),
    _column("status_code", sa.Integer, null=True),
    _column("error", sa.Text, null=True),
    _column("delivered", sa.Boolean),
)

_MAPPED = frozenset(
    {
        "Base",
        "ApiKeyRow",
        "GenerationRow",
        "ImageRow",
        "InputImageRow",
        "PendingCreateRow",
        "PredictionRow",
        "WebhookAttemptRow",
        "WebhookDeliveryRow",
    }
)


def __getattr__(name: str) -> Any:
    # The ORM classes over these tables (``db/mapped.py``), imported only when asked for: the
    # store never uses them, and importing the ORM is a sizeable part of start-up.
    if name in _MAPPED:
        from imagegen.db import mapped

        return getattr(mapped, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
