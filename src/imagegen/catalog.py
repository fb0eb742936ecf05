"""Which provider serves a model name, and under which upstream name.

Without a catalog file every ``owner/name[:version]`` goes to Replicate, so the seed API works
with no configuration at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from imagegen.errors import InvalidRequest, ModelNotFound
from imagegen.providers.base import Provider

# owner/name or owner/name:version, as Replicate names models.
REPLICATE_REF = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(:[0-9a-f]{64})?$"
)


@dataclass(frozen=True, slots=True)
class Route:
    """Where one public model name goes."""

    public_model: str
    provider: Provider
    upstream_model: str


class Catalog:
    """Resolves public model names to providers.

    ``aliases`` maps public names to explicit routes; ``default`` (usually Replicate) serves any
    name shaped like a Replicate model reference.
    """

    def __init__(self, *, aliases: Mapping[str, Route] | None = None, default: Provider | None):
        self._aliases = dict(aliases or {})
        self._default = default

    def resolve(self, model: str) -> Route:
        route = self._aliases.get(model)
        if route is not None:
            return route
        if self._default is not None and REPLICATE_REF.match(model):
            return Route(public_model=model, provider=self._default, upstream_model=model)
        if self._default is None:
            raise ModelNotFound(f"model '{model}' is not served by this imagegen", model=model)
        if ":" in model and REPLICATE_REF.match(model.split(":", 1)[0]):
            raise InvalidRequest(
                "model: a version must be 64 hexadecimal characters (owner/name:version)",
                field="model",
            )
        raise InvalidRequest(
            f"model: '{model}' is neither a catalog model nor owner/name[:version]", field="model"
        )

    def names(self) -> list[str]:
        return sorted(self._aliases)

    def routes(self) -> list[Route]:
        return [self._aliases[name] for name in sorted(self._aliases)]
