"""The catalog file (TOML): the models imagegen serves and the providers that serve them.

::

    replicate_passthrough = true      # owner/name[:version] still goes to Replicate (default)
    builtin_models = true             # serve the built-in short names too (default)

    [providers.together]              # "replicate" exists implicitly (REPLICATE_API_KEY)
    kind = "openai"                   # a key of providers.registry.KINDS
    base_url = "https://api.together.xyz"
    api_key_env = "TOGETHER_API_KEY"  # secrets never live in the file: name the variable
    max_concurrency = 8               # limits of this provider alone (optional)

    [providers.replicate_team]        # a second Replicate account: its own name and limits
    kind = "replicate"
    api_key_env = "REPLICATE_TEAM_TOKEN"
    creates_per_minute = 300

    [[models]]
    name = "flux"                     # the public name
    aliases = ["flux-schnell"]
    provider = "replicate"
    upstream = "black-forest-labs/flux-schnell"
    defaults = { width = 1024, height = 1024, response_format = "url" }
    max_images = 4
    price_per_second = 0.000225       # USD per second of metrics.predict_time (the hardware)
    # price_per_image = 0.003         # USD per image delivered; both may be given

The built-in catalog (``builtin_catalog.toml``, short names such as ``flux`` for popular
Replicate models) is served with or without a file: a file model that takes any name or alias of a
built-in model replaces that model, and ``builtin_models = false`` drops them all.

``load_catalog_file`` raises ``ConfigurationError`` naming the file and the key at fault.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imagegen.catalog import Catalog, ModelDefaults, Pricing, Route
from imagegen.config import Settings
from imagegen.errors import ConfigurationError
from imagegen.jobs.limits import Limits
from imagegen.providers.base import Provider
from imagegen.providers.registry import KINDS

REPLICATE = "replicate"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODEL_NAME = re.compile(r"^[\x21-\x7e]{1,200}$")  # visible ASCII, no spaces


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ProviderEntry(_Strict):
    """``[providers.<name>]``. The limits are this provider's own (``jobs.limits``); unset ones
    take the ``IMAGEGEN_REPLICATE_*`` settings for kind ``replicate``, none for other kinds."""

    kind: str
    base_url: str | None = None
    api_key_env: str | None = None
    max_concurrency: int | None = Field(default=None, ge=0)
    creates_per_minute: float | None = Field(default=None, gt=0)
    create_burst: int | None = Field(default=None, ge=1)

    def limits(self, settings: Settings) -> Limits:
        """This provider's limits: its own values over the kind's defaults."""
        replicate = self.kind == REPLICATE
        concurrency = settings.replicate_max_concurrency if replicate else 0
        per_minute = settings.replicate_creates_per_minute if replicate else None
        burst = settings.replicate_create_burst if replicate else 1
        return Limits(
            max_concurrency=_given(self.max_concurrency, concurrency),
            per_minute=self.creates_per_minute or per_minute,
            burst=_given(self.create_burst, burst),
            max_queue=settings.max_queue,
        )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown kind '{value}' (known kinds: {', '.join(sorted(KINDS))})")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("must be the name of an environment variable, e.g. OPENAI_API_KEY")
        return value


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


class DefaultsEntry(_Strict):
    """A model's ``defaults``: the size for ``size=auto`` and the OpenAI ``response_format``."""

    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)
    response_format: Literal["url", "b64_json"] | None = None


class ModelEntry(_Strict):
    """One ``[[models]]`` table."""

    name: str
    aliases: list[str] = Field(default_factory=list)
    provider: str
    upstream: str = Field(min_length=1)
    defaults: DefaultsEntry = Field(default_factory=DefaultsEntry)
    max_images: int | None = Field(default=None, ge=1)
    price_per_image: float | None = Field(default=None, ge=0)
    price_per_second: float | None = Field(default=None, ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _model_name(value)

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        return [_model_name(alias) for alias in value]


def _model_name(value: str) -> str:
    if not _MODEL_NAME.match(value):
        raise ValueError("must be 1 to 200 visible ASCII characters, without spaces")
    return value


class CatalogFile(_Strict):
    """The whole file."""

    replicate_passthrough: bool = True
    builtin_models: bool = True
    providers: dict[str, ProviderEntry] = Field(default_factory=dict)
    models: list[ModelEntry] = Field(default_factory=list)

    def provider_entries(self) -> dict[str, ProviderEntry]:
        """The configured providers, with the implicit ``replicate`` one."""
        return {REPLICATE: ProviderEntry(kind=REPLICATE), **self.providers}

    def served_models(self) -> list[ModelEntry]:
        """The file's models, then the built-in ones whose names the file leaves free."""
        if not self.builtin_models:
            return list(self.models)
        taken = {name for model in self.models for name in (model.name, *model.aliases)}
        kept = [
            model for model in builtin_models() if taken.isdisjoint((model.name, *model.aliases))
        ]
        return [*self.models, *kept]

    def provider_limits(self, settings: Settings) -> dict[str, Limits]:
        """Each configured provider's limits, by its name."""
        return {name: entry.limits(settings) for name, entry in self.provider_entries().items()}

    def to_catalog(self, providers: Mapping[str, Provider]) -> Catalog:
        """The catalog over built ``providers`` (one per ``provider_entries`` name)."""
        routes = [
            Route(
                public_model=model.name,
                provider=providers[model.provider],
                upstream_model=model.upstream,
                aliases=tuple(model.aliases),
                defaults=ModelDefaults(**model.defaults.model_dump()),
                max_images=model.max_images,
                pricing=Pricing(model.price_per_image, model.price_per_second),
            )
            for model in self.served_models()
        ]
        default = providers[REPLICATE] if self.replicate_passthrough else None
        return Catalog.of(routes, default=default)


@cache
def builtin_models() -> tuple[ModelEntry, ...]:
    """The models of ``builtin_catalog.toml``, shipped in the package (all on Replicate)."""
    text = (files("imagegen") / "builtin_catalog.toml").read_text(encoding="utf-8")
    return tuple(CatalogFile.model_validate(tomllib.loads(text)).models)


def load_catalog_file(path: Path | None, settings: Settings) -> CatalogFile:
    """Read and check the catalog at ``path``; no path is an empty catalog (today's behaviour).

    Raises ``ConfigurationError`` naming the file and each key at fault.
    """
    if path is None:
        return CatalogFile()
    data = _read_toml(path)
    try:
        catalog = CatalogFile.model_validate(data)
    except ValidationError as exc:
        raise _invalid(path, [_describe(problem) for problem in exc.errors()]) from None
    problems = list(_cross_checks(catalog, settings))
    if problems:
        raise _invalid(path, problems)
    return catalog


def _read_toml(path: Path) -> dict[str, Any]:
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        raise ConfigurationError(f"catalog file {path}: only TOML catalog files are supported")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigurationError(f"catalog file {path}: cannot be read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"catalog file {path}: not valid TOML: {exc}") from exc


def _invalid(path: Path, problems: list[str]) -> ConfigurationError:
    listed = "\n".join(f"  {problem}" for problem in problems)
    return ConfigurationError(f"catalog file {path} is invalid:\n{listed}")


def _describe(problem: Any) -> str:
    """``models[1].max_images: Input should be greater than or equal to 1``."""
    key = _key(problem["loc"])
    if problem["type"] == "extra_forbidden":
        if key.endswith(".api_key"):
            return f"{key}: keys are not read from the catalog file; name a variable in api_key_env"
        return f"{key}: unknown key"
    if problem["type"] == "missing":
        return f"{key}: required"
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"{key}: {message}" if key else message


def _key(loc: tuple[Any, ...]) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key += f".{part}" if key else str(part)
    return key


def _cross_checks(catalog: CatalogFile, settings: Settings) -> Iterator[str]:
    providers = catalog.provider_entries()
    if providers[REPLICATE].kind != REPLICATE:
        yield "providers.replicate.kind: the provider named 'replicate' must be of kind 'replicate'"
    seen: dict[str, str] = {}
    for index, model in enumerate(catalog.models):
        where = f"models[{index}]"
        if model.provider not in providers:
            known = ", ".join(sorted(providers))
            yield f"{where}.provider: unknown provider '{model.provider}' (configured: {known})"
        for key, name in [("name", model.name), *(("aliases", a) for a in model.aliases)]:
            if name in seen:
                yield f"{where}.{key}: '{name}' is already the name or an alias of {seen[name]}"
            seen.setdefault(name, f"models[{index}]")
        yield from _check_defaults(where, model.defaults, settings)


def _check_defaults(where: str, defaults: DefaultsEntry, settings: Settings) -> Iterator[str]:
    if (defaults.width is None) != (defaults.height is None):
        yield f"{where}.defaults: give both width and height, or neither"
    low, high = settings.min_size, settings.max_size
    for key, value in (("width", defaults.width), ("height", defaults.height)):
        if value is not None and not low <= value <= high:
            yield f"{where}.defaults.{key}: must be from {low} to {high} (IMAGEGEN_MIN/MAX_SIZE)"
