"""Settings, read once at the edge (``imagegen serve``, the CLI, tests) and passed down.

Provider variables keep their established names (``REPLICATE_API_KEY`` from the seed,
``REPLICATE_API_TOKEN`` and ``REPLICATE_BASE_URL`` as the official client reads them);
imagegen's own settings live under the ``IMAGEGEN_`` prefix. Values come from the environment
and from a ``.env`` file in the working directory.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from imagegen.jobs.webhooks.signing import decode_secret
from imagegen.storage.location import LocalLocation, StorageLocation, parse_storage_url

MIN_BACKLOG = 2048  # uvicorn's own default listen backlog


def list_value(value: Any) -> Any:
    """A list setting from the environment: a JSON list (``["a", "b"]``) or a comma-separated
    value (``a,b``); an empty value is an empty list."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list ({exc.msg})") from None
    return [item.strip() for item in text.split(",") if item.strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IMAGEGEN_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- Replicate (names shared with the seed and the official client) ---
    replicate_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("REPLICATE_API_KEY", "REPLICATE_API_TOKEN"),
        description="Replicate API token (r8_...).",
    )
    replicate_base_url: str = Field(
        default="https://api.replicate.com",
        validation_alias=AliasChoices("REPLICATE_BASE_URL", "replicate_base_url"),
        description="Base URL of the Replicate API (paths under /v1 are appended).",
    )

    # --- Server ---
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_base_url: str | None = Field(
        default=None,
        description="Base URL clients use to reach imagegen (behind a proxy); "
        "image links are built from it. Default: the request's own base URL.",
    )
    workers: int | Literal["auto"] = Field(
        default=1,
        description="Processes `imagegen serve` runs, each a full peer on one listening socket "
        "(auto: one per core). More than one needs PostgreSQL (IMAGEGEN_DATABASE_URL).",
    )
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="json: one JSON object per line, with request id, key name and generation id.",
    )

    # --- API keys, metrics ---
    allow_anonymous: bool = Field(
        default=False,
        description="Serve without API keys while none exist, although bound to a "
        "non-loopback address (by default imagegen then refuses to start).",
    )
    key_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        le=5,
        description="How long a replica trusts a looked-up API key before reading it again: "
        "the longest a key revoked on another replica keeps working there (0: no cache).",
    )
    metrics_auth: Literal["admin", "none"] = Field(
        default="admin",
        description="Who may read GET /metrics: admin keys (default), or anyone (none), "
        "e.g. when only a private network reaches imagegen or IMAGEGEN_METRICS_PORT is set.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve /metrics on its own port (no key needed there) instead of on the "
        "API's port.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="The interface IMAGEGEN_METRICS_PORT binds."
    )
    max_connections: int = Field(
        default=2000,
        ge=1,
        description="Open connections (or requests in progress) served at once; past it "
        "uvicorn answers new requests 503 at once.",
    )
    listen_backlog: int | None = Field(
        default=None,
        ge=1,
        description="New connections the kernel queues until a worker accepts them (the listen "
        "backlog); default IMAGEGEN_MAX_CONNECTIONS times the workers, at least 2048. The "
        "kernel caps it at net.core.somaxconn.",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a client has to send a request's headers once its connection is "
        "open (or its previous response sent); then 408 and the connection is closed.",
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a client may pause while sending a request body; then 408.",
    )
    keep_alive_timeout: int = Field(
        default=5, ge=1, description="Seconds an idle keep-alive connection stays open."
    )

    # --- Models ---
    catalog_path: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("IMAGEGEN_CATALOG", "IMAGEGEN_CATALOG_PATH", "catalog_path"),
        description="A TOML catalog file naming the models imagegen serves (see the README). "
        "Without one, every owner/name[:version] goes to Replicate.",
    )
    default_model: str = Field(
        default="black-forest-labs/flux-schnell",
        min_length=1,
        description="The model of an OpenAI-style request that names none.",
    )
    default_width: int = Field(
        default=1024, ge=1, description="Width for size=auto when the model has no default."
    )
    default_height: int = Field(
        default=1024, ge=1, description="Height for size=auto when the model has no default."
    )

    # --- Storage and history ---
    data_dir: Path = Path("data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite in the data directory."
    )
    database_pool_size: int = Field(
        default=10,
        ge=1,
        description="PostgreSQL: a process opens up to twice this many connections as its "
        "load needs them, and keeps them. SQLite uses one writer connection and two for reads "
        "whatever this says.",
    )
    database_pool_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a new job's (or a read's) database transaction waits for a "
        "connection (on SQLite, for its turn at the writer); past it the request is refused "
        "with 503 and Retry-After. A running job's writes go first and wait as long as it takes.",
    )
    storage_url: str | None = Field(
        default=None,
        description="Where images are stored: s3://bucket/prefix (S3 or any S3-compatible "
        "service; credentials and region from the AWS_* variables), file:///path or a "
        "directory. Default: the images directory in the data directory.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="The S3 endpoint of an S3-compatible service (MinIO, SeaweedFS, R2...); "
        "default: AWS S3.",
    )
    s3_presigned_redirect: bool = Field(
        default=False,
        description="Answer GET /images/{key} with a 307 to a presigned S3 URL instead of "
        "streaming the image through imagegen.",
    )
    s3_presigned_expiry: int = Field(
        default=300,
        ge=1,
        le=604800,
        description="Seconds a presigned image URL stays valid (S3 allows at most 7 days).",
    )
    min_free_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=0,
        description="Free space the data disk must keep: below it /readyz fails and new "
        "generations are refused with 503 (0: no floor).",
    )
    # --- Shared state across processes and replicas (optional) ---
    redis_url: str | None = Field(
        default=None,
        description="Redis (redis:// or rediss://) holding what every process must share: the "
        "providers' create rates and job events. Needs imagegen[redis]. Default: none "
        "(limits and events are per process).",
    )
    redis_prefix: str = Field(
        default="imagegen:",
        max_length=100,
        description="Prefix of imagegen's Redis keys and channels (several deployments may "
        "share one Redis under different prefixes).",
    )
    return_provider_urls: bool = Field(
        default=False,
        description="Return the provider's own (expiring) URLs instead of storing images.",
    )

    # --- Request limits ---
    min_images: int = Field(default=1, ge=1)
    max_images: int = Field(default=10, ge=1, le=100)
    min_size: int = Field(default=64, ge=1)
    max_size: int = Field(default=4096, ge=1)
    max_prompt_length: int = Field(default=4000, ge=1)
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted; a larger one is refused with 413 unread.",
    )

    idempotency_ttl: float = Field(
        default=86400.0, gt=0, description="Seconds an Idempotency-Key is remembered."
    )

    # --- Timeouts (seconds) ---
    request_timeout: float = Field(
        default=300.0, gt=0, description="Deadline for one synchronous generation, end to end."
    )
    replicate_wait: int = Field(
        default=0,
        ge=0,
        le=60,
        description="Seconds of Replicate's sync mode (Prefer: wait=N) before polling; 0 (the "
        "default): no sync mode. A prediction's id arrives only with the create's reply, so "
        "while a create waits a cancel cannot reach it (BENCHMARKS.md, sync-wait).",
    )
    poll_interval: float = Field(default=0.5, gt=0, description="Seconds between status polls.")
    http_connect_timeout: float = Field(default=5.0, gt=0)
    provider_http_transport: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp",
        description="What carries provider API calls and output downloads: aiohttp's "
        "connection pools, called directly (less CPU per request), or httpx's client.",
    )
    schema_cache_ttl: float = Field(default=3600.0, ge=0)

    # --- What upstreams may send back ---
    upstream_max_response_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest reply imagegen reads from a provider API (bytes; OpenAI-compatible "
        "replies may carry this much per image asked for). A larger one is a 502 naming this "
        "setting, read no further.",
    )
    upstream_max_retry_after: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="Longest Retry-After (seconds) imagegen honours or passes on from an "
        "upstream; longer, negative or unreadable values are clamped or ignored.",
    )

    # --- Image downloads ---
    download_timeout: float = Field(default=60.0, gt=0)
    max_image_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    download_allowed_hosts: Annotated[list[str], NoDecode, BeforeValidator(list_value)] = Field(
        default_factory=list,
        description="Extra hosts imagegen may download provider outputs from.",
    )

    # --- Input images (edits, image-to-image) ---
    max_input_image_bytes: int = Field(
        default=25 * 1024 * 1024, gt=0, description="Largest input image (upload, data URL, URL)."
    )
    max_input_pixels: int = Field(
        default=4096 * 4096, gt=0, description="Most pixels (width x height) of an input image."
    )
    max_input_images: int = Field(
        default=16, ge=1, description="Most input images one request may send (the mask aside)."
    )
    max_upload_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Largest multipart body of POST /v1/images/edits, all files together.",
    )
    input_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts input image URLs may use although private or loopback (and over "
        "plain http): entries as for download_allowed_hosts. Any public https host is allowed.",
    )

    # --- Jobs: queue and provider limits, recovery, events ---
    max_queue: int = Field(
        default=1000,
        ge=0,
        description="Generations that may wait for a provider slot, per provider; "
        "past it a create is refused with 503 and Retry-After.",
    )
    replicate_max_concurrency: int = Field(
        default=100, ge=0, description="Replicate generations running at once (0: no limit)."
    )
    replicate_creates_per_minute: float = Field(
        default=600.0,
        gt=0,
        description="Predictions imagegen creates on Replicate per minute (Replicate: 600).",
    )
    replicate_create_burst: int = Field(
        default=60, ge=1, description="Creates that may go out at once before the rate applies."
    )
    instance_id: str | None = Field(
        default=None,
        max_length=128,
        description="This instance's name on the jobs it runs (default: the host name). "
        "Give each replica its own when several share a database on one host.",
    )
    lease_seconds: float = Field(
        default=60.0,
        ge=1,
        description="How long a job stays an instance's after its last renewal; another "
        "replica adopts it after that.",
    )
    claim_interval: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="On PostgreSQL, seconds between looks for jobs waiting in the database for "
        "an instance with room (one also looks whenever one of its jobs ends).",
    )
    sse_heartbeat: float = Field(
        default=15.0, gt=0, description="Seconds between keep-alive comments on event streams."
    )

    # --- Webhooks ---
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Standard Webhooks signing secret, whsec_ + base64 of 24-64 random bytes. "
        "Requests may name a webhook only when it is set.",
    )
    webhook_allowed_networks: Annotated[
        list[IPvAnyNetwork], NoDecode, BeforeValidator(list_value)
    ] = Field(
        default_factory=list,
        description="Networks (CIDRs, a JSON list or comma-separated) webhooks may reach "
        "although private, loopback or link-local.",
    )
    webhook_retry_delays: Annotated[list[float], NoDecode, BeforeValidator(list_value)] = Field(
        default_factory=lambda: [
            *(5.0, 30.0, 120.0, 600.0, 1800.0),
            *(3600.0, 7200.0, 14400.0, 28800.0),
        ],
        min_length=1,
        description="Seconds before each retry of a failed delivery (a JSON list or "
        "comma-separated).",
    )
    webhook_max_age: float = Field(
        default=86400.0, gt=0, description="A delivery is given up this long after its event."
    )
    webhook_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a receiver has to answer one delivery."
    )

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        decode_secret(value.get_secret_value().strip())  # ValueError names what is wrong
        return SecretStr(value.get_secret_value().strip())

    @field_validator("webhook_retry_delays")
    @classmethod
    def _positive_delays(cls, value: list[float]) -> list[float]:
        if any(delay <= 0 for delay in value):
            raise ValueError("every delay must be positive")
        return value

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_storage_url(value)  # ValueError says what is wrong
        return value.strip()

    @field_validator("replicate_base_url", "public_base_url", "s3_endpoint_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("replicate_api_key")
    @classmethod
    def _empty_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        """One line for a bad value, not one per member of the union."""
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            count = int(str(value).strip())
        except ValueError:
            raise ValueError("must be a whole number of processes, or auto") from None
        if count < 1:
            raise ValueError("must be at least 1, or auto")
        return count

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.min_size > self.max_size:
            raise ValueError("IMAGEGEN_MIN_SIZE must not exceed IMAGEGEN_MAX_SIZE")
        if self.min_images > self.max_images:
            raise ValueError("IMAGEGEN_MIN_IMAGES must not exceed IMAGEGEN_MAX_IMAGES")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'imagegen.db').as_posix()}"

    @property
    def worker_count(self) -> int:
        """How many processes serve: ``workers``, or the number of cores for ``auto``."""
        if self.workers == "auto":
            return max(1, os.cpu_count() or 1)
        return self.workers

    @property
    def backlog(self) -> int:
        """The listen backlog: ``listen_backlog``, else room for every connection the workers
        may serve to wait for its accept (a burst arrives faster than a busy loop accepts)."""
        if self.listen_backlog is not None:
            return self.listen_backlog
        return max(MIN_BACKLOG, self.max_connections * self.worker_count)

    @property
    def shared_database(self) -> bool:
        """Jobs live in a database other processes may share (PostgreSQL), not SQLite."""
        return not self.resolved_database_url.startswith("sqlite")

    @property
    def images_dir(self) -> Path:
        return _images_dir(self.data_dir)

    @property
    def storage_location(self) -> StorageLocation:
        """Where images live: ``IMAGEGEN_STORAGE_URL``, else ``images_dir``."""
        if self.storage_url is None:
            return LocalLocation(self.images_dir)
        return parse_storage_url(self.storage_url)


@functools.lru_cache(maxsize=16)
def _images_dir(data_dir: Path) -> Path:
    """One ``Path`` for each data folder: every create asks for it (its free space), and a
    ``Path`` works out its text once."""
    return data_dir / "images"


def known_variables() -> frozenset[str]:
    """Every environment variable name ``Settings`` reads (upper case)."""
    names: set[str] = set()
    prefix = Settings.model_config.get("env_prefix", "")
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
        names.add(f"{prefix}{name}".upper())
    return frozenset(names)


def unknown_variables(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> list[str]:
    """``IMAGEGEN_*`` variables in the environment or the ``.env`` file that no setting reads:
    most often a misspelt setting, which would otherwise be ignored in silence."""
    from dotenv import dotenv_values

    names = set(os.environ if environ is None else environ)
    if env_file is not None and env_file.is_file():
        names.update(dotenv_values(env_file))
    known = known_variables()
    return sorted(
        name for name in names if name.upper().startswith("IMAGEGEN_") and name.upper() not in known
    )


def setting_warnings(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """What ``imagegen serve`` warns about at start-up: settings it will ignore, and a missing
    Replicate key (every Replicate model would answer 401)."""
    lines = [
        f"{name} is not an imagegen setting and is ignored (misspelt?)"
        for name in unknown_variables(environ)
    ]
    if settings.replicate_api_key is None:
        lines.append(
            "no Replicate key is set (REPLICATE_API_TOKEN or REPLICATE_API_KEY): "
            "models served by Replicate will answer 401"
        )
    return lines
