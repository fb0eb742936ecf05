"""Provider kinds: the ``kind`` of a catalog ``[providers.<name>]`` table, and how to build one.

Adding a provider kind adds one entry to ``KINDS``; nothing else branches on provider names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from imagegen.config import Settings
from imagegen.errors import ConfigurationError
from imagegen.providers.base import Provider
from imagegen.providers.replicate import ReplicateProvider
from imagegen.providers.replies import ReplyLimits
from imagegen.storage.base import ImageStore
from imagegen.upstream import Upstream

OPENAI_BASE_URL = "https://api.openai.com"


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One configured provider with its secret resolved.

    ``api_key_env`` is the variable the catalog named (None: the kind's default, e.g.
    ``REPLICATE_API_KEY``); ``api_key`` is its value, None when unset or empty.
    """

    name: str
    kind: str
    base_url: str | None = None
    api_key_env: str | None = None
    api_key: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderDeps:
    """What every provider may share. Both upstreams belong to the caller.

    ``http`` has short reads, for APIs that are polled (Replicate); ``blocking_http`` waits as
    long as a generation may take, for APIs that answer only when the image is done.
    ``images`` is the store input images (edits) are read from; None: edits are refused.
    """

    settings: Settings
    http: Upstream
    blocking_http: Upstream
    images: ImageStore | None = None


Factory = Callable[[ProviderSpec, ProviderDeps], Provider]


def _replicate(spec: ProviderSpec, deps: ProviderDeps) -> Provider:
    settings = deps.settings
    token = spec.api_key
    if spec.api_key_env is None and settings.replicate_api_key is not None:
        token = settings.replicate_api_key.get_secret_value()
    return ReplicateProvider(
        deps.http,
        api_token=token,
        name=spec.name,
        replies=ReplyLimits.from_settings(settings),
        base_url=spec.base_url or settings.replicate_base_url,
        wait_seconds=settings.replicate_wait,
        poll_interval=settings.poll_interval,
        schema_cache_ttl=settings.schema_cache_ttl,
        images=deps.images,
    )


def _openai(spec: ProviderSpec, deps: ProviderDeps) -> Provider:
    # Imported when a catalog names an OpenAI-compatible provider: most serve only Replicate.
    from imagegen.providers.openai_compat import OpenAICompatProvider

    return OpenAICompatProvider(
        deps.blocking_http,
        name=spec.name,
        base_url=spec.base_url or OPENAI_BASE_URL,
        api_key=spec.api_key,
        replies=ReplyLimits.from_settings(deps.settings),
        images=deps.images,
    )


KINDS: Mapping[str, Factory] = MappingProxyType({"replicate": _replicate, "openai": _openai})
"""Provider kind -> factory."""


def build_provider(spec: ProviderSpec, deps: ProviderDeps) -> Provider:
    """Build the provider ``spec`` describes; ``ConfigurationError`` for an unknown kind."""
    factory = KINDS.get(spec.kind)
    if factory is None:
        known = ", ".join(sorted(KINDS))
        raise ConfigurationError(
            f"provider '{spec.name}': unknown kind '{spec.kind}' (known kinds: {known})"
        )
    return factory(spec, deps)
