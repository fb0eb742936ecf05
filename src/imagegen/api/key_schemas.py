"""The wire shapes of ``/api/v1/keys`` and ``/api/v1/usage``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from imagegen.auth.keys import ApiKey, KeyLimits, NewKey, models_tuple
from imagegen.usage import UsageRow


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    admin: bool = False
    rpm: int | None = Field(default=None, ge=1, description="Creates per minute.")
    max_concurrent: int | None = Field(default=None, ge=1, description="Generations at once.")
    images_per_day: int | None = Field(default=None, ge=1, description="Images per UTC day.")
    models: list[str] | None = Field(
        default=None, description="Model names (or aliases) the key may use; default: all."
    )

    def to_new(self) -> NewKey:
        models = models_tuple(self.models)
        limits = KeyLimits(self.rpm, self.max_concurrent, self.images_per_day, models)
        return NewKey(self.name, self.admin, limits)


class Spent(BaseModel):
    images: int = 0
    generations: int = 0
    failures: int = 0
    cost: float = 0.0
    unpriced: int = Field(0, description="Generations whose cost is unknown (not in `cost`).")

    @classmethod
    def of(cls, row: UsageRow | None) -> Spent:
        if row is None:
            return cls()
        return cls(
            images=row.images,
            generations=row.generations,
            failures=row.failures,
            cost=round(row.cost, 10),
            unpriced=row.unpriced,
        )


class KeyInfo(BaseModel):
    name: str
    prefix: str = Field(description="The first characters of the key, to tell keys apart.")
    admin: bool
    rpm: int | None
    max_concurrent: int | None
    images_per_day: int | None
    models: list[str] | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    usage_today: Spent | None = None
    usage_month: Spent | None = None

    @classmethod
    def of(cls, key: ApiKey, today: Spent | None = None, month: Spent | None = None) -> KeyInfo:
        limits = key.limits
        return cls(
            name=key.name,
            prefix=key.prefix,
            admin=key.admin,
            rpm=limits.rpm,
            max_concurrent=limits.max_concurrent,
            images_per_day=limits.images_per_day,
            models=None if limits.models is None else list(limits.models),
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
            usage_today=today,
            usage_month=month,
        )


class KeyCreated(KeyInfo):
    key: str = Field(description="The secret: shown once, never stored.")


class KeyList(BaseModel):
    data: list[KeyInfo]


class UsageEntry(Spent):
    key: str | None = None
    model: str | None = None
    day: str | None = None


class UsageReport(BaseModel):
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    group_by: str
    data: list[UsageEntry]
    total: Spent
