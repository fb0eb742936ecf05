"""``/api/v1/keys``: create, list and revoke API keys (admin keys only). The same operations as
``imagegen keys create|list|revoke``; a created key's secret is in the reply, once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from imagegen.api.deps import AUTHENTICATED, PrincipalDep, Services, ServicesDep
from imagegen.api.key_schemas import KeyCreate, KeyCreated, KeyInfo, KeyList, Spent
from imagegen.api.schemas import ErrorResponse
from imagegen.auth.keys import new_secret
from imagegen.db.keys import SqlKeyStore
from imagegen.db.usage import SqlUsage
from imagegen.errors import ConfigurationError
from imagegen.keys_usage import usage_by_key

router = APIRouter(prefix="/api/v1/keys", tags=["keys"], dependencies=AUTHENTICATED)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 403, 404)
}


def stores(services: Services) -> tuple[SqlKeyStore, SqlUsage]:
    if services.keys is None or services.usage is None:
        raise ConfigurationError("this imagegen has no key store")
    return services.keys, services.usage


@router.post("", status_code=201, response_model=KeyCreated, responses=ERRORS)
async def create_key(body: KeyCreate, services: ServicesDep, principal: PrincipalDep) -> KeyCreated:
    """A new key; its secret (``key``) is shown here only."""
    principal.require_admin_key()
    keys, _ = stores(services)
    secret = new_secret()
    key = await keys.create(body.to_new(), secret)
    if services.auth is not None:
        services.auth.forget()  # the first key ends anonymous access at once
    return KeyCreated(**KeyInfo.of(key).model_dump(), key=secret)


@router.get("", response_model=KeyList, responses=ERRORS)
async def list_keys(services: ServicesDep, principal: PrincipalDep) -> KeyList:
    """Every key, revoked ones too, with its usage today and this month (UTC)."""
    principal.require_admin_key()
    keys, usage = stores(services)
    today, month = await usage_by_key(usage, datetime.now(UTC))
    return KeyList(
        data=[
            KeyInfo.of(key, Spent.of(today.get(key.id)), Spent.of(month.get(key.id)))
            for key in await keys.list()
        ]
    )


@router.delete("/{name}", response_model=KeyInfo, responses=ERRORS)
async def revoke_key(name: str, services: ServicesDep, principal: PrincipalDep) -> KeyInfo:
    """Revoke a key: it stops working at once here, and within ``IMAGEGEN_KEY_CACHE_SECONDS``
    on other replicas. Its generations and usage stay."""
    principal.require_admin_key()
    keys, _ = stores(services)
    key = await keys.revoke(name)
    if services.auth is not None:
        services.auth.forget()
    return KeyInfo.of(key)
