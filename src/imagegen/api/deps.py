"""Dependencies shared by the routers: the service container, base URL, body checks."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import Scope

from imagegen.api.wire import check_parameters
from imagegen.auth.authenticator import Authenticator
from imagegen.auth.principal import ANONYMOUS, Principal
from imagegen.catalog import Catalog
from imagegen.config import Settings
from imagegen.db.keys import SqlKeyStore
from imagegen.db.usage import SqlUsage
from imagegen.errors import InvalidRequest
from imagegen.inputs import InputImages
from imagegen.jobs.protocols import GenerationStore
from imagegen.jobs.runner import JobRunner
from imagegen.limits.gate import KeyGate
from imagegen.logs import log_context
from imagegen.metrics import Metrics
from imagegen.shared.client import SharedRedis
from imagegen.storage.base import ImageStore
from imagegen.storage.health import StoreHealth


@dataclass(slots=True)
class Services:
    """Everything the routes use, built once per app in the lifespan (``imagegen.services``)."""

    settings: Settings
    runner: JobRunner
    catalog: Catalog
    store: GenerationStore
    image_store: ImageStore
    inputs: InputImages
    # API keys and what hangs on them; without ``auth`` every request is anonymous.
    auth: Authenticator | None = None
    keys: SqlKeyStore | None = None
    gate: KeyGate | None = None
    usage: SqlUsage | None = None
    metrics: Metrics | None = None
    redis: SharedRedis | None = None  # the shared state, when IMAGEGEN_REDIS_URL is set
    # Whether ``image_store`` is known to be down; without it creates never ask.
    storage_health: StoreHealth | None = None


# The dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its
# thread pool on every request, which costs more than the work they do.


async def get_services(request: Request) -> Services:
    return _services(request)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_base_url(request: Request) -> str:
    """Where clients reach imagegen: the configured public URL, else the request's own."""
    services = _services(request)
    if services.settings.public_base_url:
        return services.settings.public_base_url
    return request_base_url(request.scope)


def request_base_url(scope: Scope) -> str:
    """The request's own base URL, as Starlette's ``request.base_url`` has it, without the
    trailing slash; worked out once for each scheme, ``Host`` and root path it sees."""
    host = next((bytes(value) for name, value in scope["headers"] if name == b"host"), None)
    root_path = scope.get("app_root_path", scope.get("root_path", ""))
    server = scope.get("server")
    address = None if server is None else (str(server[0]), server[1])
    return _base_url(scope.get("scheme", "http"), host, address, root_path)


@functools.lru_cache(maxsize=256)  # bounded: the Host header is the client's to choose
def _base_url(
    scheme: str, host: bytes | None, server: tuple[str, int | None] | None, root_path: str
) -> str:
    headers = [] if host is None else [(b"host", host)]
    scope = {
        "type": "http",
        "scheme": scheme,
        "server": server,
        "path": root_path,
        "root_path": root_path,
        "query_string": b"",
        "headers": headers,
    }
    return str(Request(scope).base_url).rstrip("/")


async def get_principal(request: Request) -> Principal:
    """Who sent the request (``Authorization: Bearer ig_...``); ``Unauthenticated`` (401 in
    the route's own error shape) when it needs a key and has no valid one."""
    return await _principal(request, _services(request))


async def _principal(request: Request, services: Services) -> Principal:
    auth = services.auth
    if auth is None:
        return ANONYMOUS
    principal = await auth.authenticate(request.headers.get("authorization"))
    if principal.name is not None:
        request.state.key_name = principal.name  # the access log's key name (never the key)
        context = log_context.get()
        if context is not None:
            context["key_name"] = principal.name
    return principal


async def require_json(request: Request) -> None:
    """Create endpoints take JSON only; anything else is a 400 naming the header."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise InvalidRequest("Content-Type: must be application/json", field="Content-Type")


async def storable_parameters(request: Request) -> None:
    """Every path and query parameter must be text a database can store (``api/wire.py``)."""
    scope = request.scope
    if scope.get("path_params"):
        check_parameters(request.path_params.items())
    if scope.get("query_string"):
        check_parameters(request.query_params.multi_items())


ServicesDep = Annotated[Services, Depends(get_services)]
BaseUrlDep = Annotated[str, Depends(get_base_url)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
AUTHENTICATED = [Depends(get_principal)]


@dataclass(frozen=True, slots=True)
class Caller:
    """What a create endpoint takes besides its body: the request, who sent it, the services
    and where clients reach imagegen."""

    request: Request
    services: Services
    base_url: str
    principal: Principal


async def get_caller(request: Request, principal: PrincipalDep) -> Caller:
    """The ``Caller`` as a dependency (how a create endpoint declares it; ``JsonBodyRoute``
    builds the same with ``open_caller``)."""
    return Caller(request, _services(request), await get_base_url(request), principal)


async def open_caller(request: Request) -> Caller:
    """What FastAPI would run before a create endpoint, in its order: the app's
    ``storable_parameters``, the router's ``get_principal``, the route's ``require_json``,
    then ``get_caller``."""
    await storable_parameters(request)
    services = _services(request)
    principal = await _principal(request, services)
    await require_json(request)
    base_url = services.settings.public_base_url or request_base_url(request.scope)
    return Caller(request, services, base_url, principal)


CallerDep = Annotated[Caller, Depends(get_caller)]
