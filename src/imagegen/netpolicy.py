"""Which hosts and addresses imagegen may reach over the network: the download allow-list, and
the public-address test that downloads (``imagegen.fetch``) and webhooks
(``imagegen.jobs.webhooks``) share.

- ``HostAllowList``: ``replicate.delivery`` and its subdomains, hosts of configured provider base
  URLs, and ``download_allowed_hosts``. ``example.com`` matches exactly, ``.example.com`` (or
  ``*.example.com``) any subdomain; only exact configured entries are trusted with private
  addresses (a self-hosted provider on 127.0.0.1).
- ``is_public_address``: a globally routable unicast address, never private, loopback,
  link-local, multicast, reserved or unspecified, IPv4 inside IPv6 (mapped, 6to4, Teredo,
  NAT64) included.
- ``Resolver``: how a host name becomes addresses, injected so tests need no DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from imagegen.config import Settings

DEFAULT_ALLOWED_HOSTS = ("replicate.delivery", ".replicate.delivery")

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> IP address strings``; raises ``OSError`` when the name does not resolve."""


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the event loop's ``getaddrinfo`` (in a thread, not blocking)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_public_address(address: str) -> bool:
    """Whether ``address`` is a globally routable unicast address (IPv4 embedded in IPv6 too)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _is_global_unicast(ip.ipv4_mapped)
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not _is_global_unicast(embedded):
            return False
    return _is_global_unicast(ip)


def _is_global_unicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not any(getattr(ip, flag) for flag in _NOT_PUBLIC)


_NOT_PUBLIC = ("is_private", "is_loopback", "is_link_local", "is_multicast", "is_reserved")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _normalise_host(entry: str) -> str:
    entry = entry.strip().lower()
    if "://" in entry:
        entry = httpx.URL(entry).raw_host.decode("ascii")
    return entry.removeprefix("*").strip("[]").rstrip(".")


@dataclass(frozen=True, slots=True)
class HostAllowList:
    """Hosts imagegen may download from. ``example.com`` matches exactly; ``.example.com``
    matches any subdomain. Only exact ``configured`` entries may resolve to private addresses.
    """

    configured: tuple[str, ...] = ()
    builtin: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS

    def __post_init__(self) -> None:
        object.__setattr__(self, "configured", _entries(self.configured))
        object.__setattr__(self, "builtin", _entries(self.builtin))

    @classmethod
    def from_settings(cls, settings: Settings, *provider_base_urls: str) -> HostAllowList:
        """The allow-list for ``settings``, plus the base URLs of other configured providers."""
        urls = (settings.replicate_base_url, *provider_base_urls)
        return cls(configured=(*urls, *settings.download_allowed_hosts))

    def permits(self, host: str) -> bool:
        host = _normalise_host(host)
        return any(_matches(entry, host) for entry in (*self.configured, *self.builtin))

    def trusts(self, host: str) -> bool:
        """Whether ``host`` is an exact configured entry, so private addresses are acceptable."""
        return _normalise_host(host) in self.configured


def _entries(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(e for e in map(_normalise_host, values) if e.strip(".")))


def _matches(entry: str, host: str) -> bool:
    return host.endswith(entry) if entry.startswith(".") else host == entry
