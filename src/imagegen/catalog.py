"""Which provider serves a model name, under which upstream name, with what defaults and limits.

Without a catalog file every ``owner/name[:version]`` goes to Replicate, so the seed API works
with no configuration at all. A catalog file (``catalog_file``) adds named routes; a name that is
neither a route nor a Replicate reference is a ``ModelNotFound`` (404) naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from imagegen.errors import InvalidRequest, ModelNotFound
from imagegen.models import GenerationRequest, PendingCreate, PredictionRecord, ProviderResult
from imagegen.providers.base import GenerationContext, Provider

# owner/name or owner/name:version, as Replicate names models.
REPLICATE_REF = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(:[0-9a-f]{64})?$"
)
# A name that could be a catalog entry (no slash, no spaces): unknown ones are a 404, not a 400.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")
MAX_PASSTHROUGH_ROUTES = 1024  # passthrough routes a catalog remembers; past it, made per call


@dataclass(frozen=True, slots=True)
class ModelDefaults:
    """What a request that leaves things open gets: the size for ``size=auto``, and the
    OpenAI API's ``response_format`` (``url`` or ``b64_json``)."""

    width: int | None = None
    height: int | None = None
    response_format: str | None = None

    @property
    def size(self) -> tuple[int, int] | None:
        if self.width is None or self.height is None:
            return None
        return self.width, self.height


@dataclass(frozen=True, slots=True)
class Pricing:
    """What a model costs upstream, in USD, as the catalog states it: per image delivered,
    and/or per second the upstream billed (Replicate's ``metrics.predict_time`` times the
    hardware's price). Nothing stated means unknown, and unknown costs are never guessed."""

    per_image: float | None = None
    per_second: float | None = None

    def cost(self, images: int, predict_seconds: float | None) -> float | None:
        """The cost of a generation that delivered ``images``; None when it cannot be known."""
        if self.per_image is None and self.per_second is None:
            return None
        total = 0.0
        if self.per_image is not None:
            total += self.per_image * images
        if self.per_second is not None:
            if predict_seconds is None:
                return None
            total += self.per_second * predict_seconds
        return total

    def failed_cost(self) -> float | None:
        """A failed generation delivered nothing: free when priced per image only."""
        return 0.0 if self.per_image is not None and self.per_second is None else None


@dataclass(frozen=True, slots=True)
class Route:
    """Where one public model name goes, and what the catalog says about it."""

    public_model: str
    provider: Provider
    upstream_model: str
    aliases: tuple[str, ...] = ()
    defaults: ModelDefaults = field(default_factory=ModelDefaults)
    max_images: int | None = None
    pricing: Pricing = field(default_factory=Pricing)

    def check_images(self, count: int, *, field: str) -> None:
        """Raise ``InvalidRequest`` naming ``field`` if ``count`` exceeds the model's limit."""
        _check_images(self.public_model, self.max_images, count, field=field)


def _check_images(model: str, max_images: int | None, count: int, *, field: str) -> None:
    if max_images is not None and count > max_images:
        raise InvalidRequest(
            f"{field}: model '{model}' makes at most {max_images} images per request",
            field=field,
        )


@dataclass(slots=True)
class LimitedProvider:
    """A route's provider that refuses more images than the route allows, before any upstream
    call (the seed endpoint's ``num_images``; the OpenAI endpoint checks ``n`` itself first),
    and that names the public model when the upstream does not know the one it maps to."""

    inner: Provider
    model: str
    max_images: int | None
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.inner.name

    def first_creates(self, request: GenerationRequest) -> Sequence[PendingCreate]:
        if self.max_images is not None and request.num_images > self.max_images:
            return ()  # refused by generate, once the job is written
        return self.inner.first_creates(request)

    async def generate(
        self, request: GenerationRequest, context: GenerationContext
    ) -> ProviderResult:
        _check_images(self.model, self.max_images, request.num_images, field="num_images")
        try:
            return await self.inner.generate(request, context)
        except ModelNotFound as exc:
            if exc.model == self.model:
                raise
            message = f"model '{self.model}' is served by upstream model '{exc.model}': "
            raise ModelNotFound(message + exc.message, model=self.model) from exc

    async def resume(
        self,
        request: GenerationRequest,
        predictions: Sequence[PredictionRecord],
        context: GenerationContext,
        pending: Sequence[PendingCreate] = (),
    ) -> ProviderResult:
        return await self.inner.resume(request, predictions, context, pending)

    async def cancel(self, predictions: Sequence[PredictionRecord]) -> None:
        await self.inner.cancel(predictions)

    async def aclose(self) -> None:
        """The inner provider belongs to whoever built it."""


class Catalog:
    """Resolves public model names (and aliases) to routes.

    ``aliases`` maps names to explicit routes; ``default`` (Replicate, unless the catalog file
    turns passthrough off) serves any name shaped like a Replicate model reference.
    """

    def __init__(self, *, aliases: Mapping[str, Route] | None = None, default: Provider | None):
        self._aliases = dict(aliases or {})
        self._default = default
        # Passthrough routes made so far (a few models in practice; bounded, names are users').
        self._passthrough: dict[str, Route] = {}

    @classmethod
    def of(cls, routes: Iterable[Route], *, default: Provider | None) -> Catalog:
        """A catalog serving each route under its public name and its aliases."""
        names: dict[str, Route] = {}
        for route in routes:
            if route.max_images is not None or route.upstream_model != route.public_model:
                limited = LimitedProvider(route.provider, route.public_model, route.max_images)
                route = replace(route, provider=limited)
            for name in (route.public_model, *route.aliases):
                names[name] = route
        return cls(aliases=names, default=default)

    @property
    def passthrough(self) -> bool:
        """Whether ``owner/name[:version]`` names go to Replicate."""
        return self._default is not None

    def resolve(self, model: str) -> Route:
        route = self._aliases.get(model)
        if route is not None:
            return route
        route = self._passthrough.get(model)
        if route is not None:
            return route
        if self._default is not None and REPLICATE_REF.match(model):
            route = Route(public_model=model, provider=self._default, upstream_model=model)
            if len(self._passthrough) < MAX_PASSTHROUGH_ROUTES:
                self._passthrough[model] = route
            return route
        if self._default is None or PLAIN_NAME.match(model):
            raise ModelNotFound(
                f"model '{model}' is not served by this imagegen (GET /v1/models lists the "
                "models it serves)",
                model=model,
            )
        if ":" in model and REPLICATE_REF.match(model.split(":", 1)[0]):
            raise InvalidRequest(
                "model: a version must be 64 hexadecimal characters (owner/name:version)",
                field="model",
            )
        raise InvalidRequest(
            f"model: '{model}' is neither a catalog model nor owner/name[:version]", field="model"
        )

    def names(self) -> list[str]:
        """Every name the catalog routes, aliases included."""
        return sorted(self._aliases)

    def routes(self) -> list[Route]:
        """One route per catalog model (not per alias), by public name."""
        unique = {route.public_model: route for route in self._aliases.values()}
        return [unique[name] for name in sorted(unique)]
