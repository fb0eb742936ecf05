"""An API key as imagegen keeps it: a name, limits, and the SHA-256 of its secret.

Secrets are ``ig_`` + 43 URL-safe characters (32 random bytes). They carry 256 bits of entropy,
so a plain SHA-256 is the right hash (no salt or stretching buys anything against guessing), and
the hash is the lookup key: comparing secrets in constant time is not needed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from imagegen.errors import InvalidRequest

SECRET_PREFIX = "ig_"
_SECRET = re.compile(r"^ig_[A-Za-z0-9_-]{43}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SHOWN_PREFIX = 10  # "ig_" and 7 characters: enough to tell keys apart, useless to guess


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_secret(value: str) -> bool:
    return bool(_SECRET.match(value))


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidRequest(
            "name: 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit",
            field="name",
        )
    return name


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """None means no limit. ``models``: the public model names (or aliases) the key may use."""

    rpm: int | None = None
    max_concurrent: int | None = None
    images_per_day: int | None = None
    models: tuple[str, ...] | None = None

    def check(self) -> KeyLimits:
        for name in ("rpm", "max_concurrent", "images_per_day"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidRequest(f"{name}: must be at least 1", field=name)
        if self.models is not None and not all(m.strip() for m in self.models):
            raise InvalidRequest("models: names must not be empty", field="models")
        return self


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    admin: bool
    limits: KeyLimits
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class NewKey:
    """What ``create`` needs besides the secret."""

    name: str
    admin: bool = False
    limits: KeyLimits = field(default_factory=KeyLimits)

    def checked(self) -> NewKey:
        check_name(self.name)
        self.limits.check()
        return self


def models_tuple(models: Sequence[str] | None) -> tuple[str, ...] | None:
    if models is None:
        return None
    return tuple(dict.fromkeys(m.strip() for m in models if m.strip()))
