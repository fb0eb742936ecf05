"""Persistence of generation jobs: tables, the store with its job leases, the webhook outbox, and
migrations run at start-up."""

from imagegen.db.engine import PoolSettings
from imagegen.db.migrate import create_engine, migrate
from imagegen.db.outbox import SqlWebhookOutbox
from imagegen.db.store import (
    MAX_LIST_LIMIT,
    GenerationStore,
    InvalidTransition,
    new_generation_id,
    new_ulid,
    open_store,
    utc_now,
)

__all__ = [
    "MAX_LIST_LIMIT",
    "GenerationStore",
    "InvalidTransition",
    "PoolSettings",
    "SqlWebhookOutbox",
    "create_engine",
    "migrate",
    "new_generation_id",
    "new_ulid",
    "open_store",
    "utc_now",
]
