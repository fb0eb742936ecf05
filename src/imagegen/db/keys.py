"""API keys in SQL (``api_keys``): created with only the hash of their secret, found by that
hash, revoked by name; ``last_used_at`` written in batches (``touch``), never per request."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from imagegen.auth.keys import SHOWN_PREFIX, ApiKey, KeyLimits, NewKey, hash_secret
from imagegen.db.database import Database
from imagegen.db.rows import Row
from imagegen.db.tables import API_KEYS
from imagegen.errors import InvalidRequest, NotFound

_FIND = sa.select(API_KEYS).where(API_KEYS.c.key_hash == sa.bindparam("key_hash"))
_ACTIVE = sa.select(sa.func.count()).select_from(API_KEYS).where(API_KEYS.c.revoked_at.is_(None))
_TOUCH = (
    sa.update(API_KEYS)
    .where(API_KEYS.c.id == sa.bindparam("key_id"))
    .values(last_used_at=sa.bindparam("used_at"))
)


class SqlKeyStore:
    """Raises what the ``Database`` raises (``StoreBusy`` at capacity)."""

    def __init__(
        self, db: Database, *, clock: Callable[[], datetime], new_id: Callable[[], str]
    ) -> None:
        self._db = db
        self._clock = clock
        self._new_id = new_id

    async def create(self, new: NewKey, secret: str) -> ApiKey:
        """Store a key for ``secret`` (only its hash); ``InvalidRequest`` if the name is taken."""
        new = new.checked()
        limits = new.limits
        values: dict[str, Any] = {
            "id": self._new_id(),
            "name": new.name,
            "prefix": secret[:SHOWN_PREFIX],
            "key_hash": hash_secret(secret),
            "admin": new.admin,
            "rpm": limits.rpm,
            "max_concurrent": limits.max_concurrent,
            "images_per_day": limits.images_per_day,
            "models": None if limits.models is None else list(limits.models),
            "created_at": self._clock(),
            "last_used_at": None,
            "revoked_at": None,
        }
        try:
            # A request's own write, no job's: it waits its turn as a new job does.
            await self._db.write(partial(_run, sa.insert(API_KEYS), values), admission=True)
        except IntegrityError:
            raise InvalidRequest(f"name: a key named '{new.name}' exists", field="name") from None
        return to_key(values)

    async def find(self, secret: str) -> ApiKey | None:
        """The key whose secret this is, revoked or not; None for an unknown secret."""
        found = await self._db.read(partial(_rows, _FIND, {"key_hash": hash_secret(secret)}))
        return to_key(found[0]) if found else None

    async def list(self) -> list[ApiKey]:
        stmt = sa.select(API_KEYS).order_by(API_KEYS.c.created_at, API_KEYS.c.name)
        return [to_key(row) for row in await self._db.read(partial(_rows, stmt, {}))]

    async def get(self, name: str) -> ApiKey:
        stmt = sa.select(API_KEYS).where(API_KEYS.c.name == name)
        found = await self._db.read(partial(_rows, stmt, {}))
        if not found:
            raise NotFound(f"no key named '{name}'")
        return to_key(found[0])

    async def revoke(self, name: str) -> ApiKey:
        """Revoke the named key (again is a no-op); ``NotFound`` for an unknown name."""
        stmt = (
            sa.update(API_KEYS)
            .where(API_KEYS.c.name == name, API_KEYS.c.revoked_at.is_(None))
            .values(revoked_at=self._clock())
        )
        await self._db.write(partial(_run, stmt, {}), admission=True)
        return await self.get(name)

    async def active_count(self) -> int:
        return int(await self._db.read(lambda connection: connection.execute(_ACTIVE).scalar_one()))

    async def touch(self, used: Mapping[str, datetime]) -> None:
        """Record when each key (by id) was last used: one transaction for all of them."""
        if used:
            rows = [{"key_id": key_id, "used_at": at} for key_id, at in used.items()]
            await self._db.write(partial(_run_many, _TOUCH, rows))


def to_key(row: Row) -> ApiKey:
    models = row["models"]
    return ApiKey(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        admin=bool(row["admin"]),
        limits=KeyLimits(
            rpm=row["rpm"],
            max_concurrent=row["max_concurrent"],
            images_per_day=row["images_per_day"],
            models=None if models is None else tuple(models),
        ),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


def _run(stmt: sa.Executable, values: Mapping[str, Any], connection: sa.Connection) -> None:
    connection.execute(stmt, dict(values) if values else None)


def _run_many(stmt: sa.Executable, rows: list[dict[str, Any]], connection: sa.Connection) -> None:
    connection.execute(stmt, rows)


def _rows(stmt: sa.Select[Any], params: Mapping[str, Any], connection: sa.Connection) -> list[Row]:
    return list(connection.execute(stmt, dict(params) or None).mappings().all())
