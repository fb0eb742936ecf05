"""The secure default: without API keys, imagegen serves only on a loopback address."""

from __future__ import annotations

import ipaddress

from imagegen.config import Settings


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def anonymous_allowed(settings: Settings) -> bool:
    """Whether requests without a key may be served while no key exists."""
    return settings.allow_anonymous or is_loopback(settings.host)


def refusal(settings: Settings) -> str:
    """The one line ``imagegen serve`` exits with when bound openly with no key."""
    return (
        f"refusing to serve on {settings.host} without API keys: create one with "
        "`imagegen keys create NAME --admin` (or set IMAGEGEN_ALLOW_ANONYMOUS=true to serve "
        "without keys)"
    )
