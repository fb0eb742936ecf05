"""Where an S3 bucket is and how to reach it: ``S3Config`` (from the ``AWS_*`` variables) and
the obstore client built from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from obstore.store import S3Store

from imagegen.storage.location import S3Location

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class S3Config:
    """Where the bucket is and how to sign for it. Secrets stay out of ``repr``."""

    location: S3Location
    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    presigned_redirect: bool = False
    presigned_expiry: float = 300.0

    @classmethod
    def from_environment(
        cls,
        location: S3Location,
        environ: Mapping[str, str],
        *,
        endpoint_url: str | None = None,
        presigned_redirect: bool = False,
        presigned_expiry: float = 300.0,
    ) -> S3Config:
        """Region and credentials from the standard ``AWS_*`` variables in ``environ``.

        Without ``AWS_ACCESS_KEY_ID`` obstore falls back to its own chain (web identity, ECS,
        instance metadata), as every AWS SDK does.
        """

        def get(name: str) -> str | None:
            return environ.get(name, "").strip() or None

        return cls(
            location=location,
            region=get("AWS_REGION") or get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            endpoint_url=endpoint_url,
            access_key_id=get("AWS_ACCESS_KEY_ID"),
            secret_access_key=get("AWS_SECRET_ACCESS_KEY"),
            session_token=get("AWS_SESSION_TOKEN"),
            presigned_redirect=presigned_redirect,
            presigned_expiry=presigned_expiry,
        )

    @property
    def where(self) -> str:
        """The bucket and endpoint, for messages (no secrets)."""
        return f"{self.location.url} at {self.endpoint_url or 'AWS S3'}"


def object_store(config: S3Config) -> S3Store:
    """The obstore client for ``config``, with bounded timeouts and retries."""
    client: ClientConfig = {"connect_timeout": timedelta(seconds=5), "read_timeout": "30s"}
    if config.endpoint_url and config.endpoint_url.startswith("http://"):
        client["allow_http"] = True
    retry: RetryConfig = {
        "max_retries": 3,
        "retry_timeout": timedelta(seconds=15),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
        },
    }
    # AWS: virtual-hosted style, as AWS recommends (path style for a dotted bucket name, which
    # TLS cannot serve as a host name); other services: path style, which all of them speak.
    virtual_hosted = config.endpoint_url is None and "." not in config.location.bucket
    options: dict[str, str | bool] = {
        "region": config.region,
        "virtual_hosted_style_request": virtual_hosted,
    }
    if config.endpoint_url:
        options["endpoint"] = config.endpoint_url
    if config.access_key_id and config.secret_access_key:
        options["access_key_id"] = config.access_key_id
        options["secret_access_key"] = config.secret_access_key
        if config.session_token:
            options["token"] = config.session_token
    return S3Store(
        config.location.bucket,
        prefix=config.location.prefix or None,
        client_options=client,
        retry_config=retry,
        **options,  # type: ignore[arg-type]
    )
