"""Which hosts and addresses imagegen may reach over the network: the download allow-list, and
the public-address test that downloads (``imagegen.fetch``) and webhooks
(``imagegen.jobs.webhooks``) share.

- ``HostAllowList``: ``replicate.delivery`` and its subdomains (any port), the configured provider
  base URLs (host and port), and ``download_allowed_hosts``. An entry matches host and port:
  ``https://example.com`` (a URL: its port, else the scheme's default, 443) or
  ``example.com:8443`` that port only; a bare ``example.com`` any port. ``example.com`` matches
  the host exactly, ``.example.com`` (or ``*.example.com``) any subdomain. Only exact configured
  entries are trusted with private addresses (a self-hosted provider on 127.0.0.1), and only on
  their port: a provider at ``http://127.0.0.1:8765`` does not open 127.0.0.1's other ports.
- ``AnyPublicHost``: the policy for input images users name by URL: any host, at public
  addresses only, except exact configured entries (trusted with private addresses).
- ``is_public_address``: a globally routable unicast address, never private, loopback,
  link-local, multicast, reserved or unspecified, IPv4 inside IPv6 (mapped, 6to4, Teredo,
  NAT64) included.
- ``Resolver``: how a host name becomes addresses, injected so tests need no DNS.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx

from imagegen.errors import ConfigurationError

if TYPE_CHECKING:
    from imagegen.config import Settings

DEFAULT_ALLOWED_HOSTS = ("replicate.delivery", ".replicate.delivery")
DEFAULT_PORTS = {"http": 80, "https": 443}

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> IP address strings``; raises ``OSError`` when the name does not resolve."""


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the event loop's ``getaddrinfo`` (in a thread, not blocking)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@functools.lru_cache(maxsize=1024)
def is_public_address(address: str) -> bool:
    """Whether ``address`` is a globally routable unicast address (IPv4 embedded in IPv6 too).

    Remembered per address string (a pure function; every download checks the handful of
    addresses its hosts resolve to, and ``ipaddress``'s tests cost some 10 us each time)."""
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


@dataclass(frozen=True, slots=True)
class HostEntry:
    """One allow-list entry: ``host`` (``.example.com`` for any subdomain), ``port`` (None: any)."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> HostEntry | None:
        """``https://h[:p]/...`` (port by scheme when absent), ``h:p``, ``[v6]:p``, or a bare host
        (any port); ``*.`` or ``.`` in front for subdomains. None for a blank entry. Raises
        ``ConfigurationError`` for an unreadable URL or port."""
        text = text.strip().lower()
        try:
            host, port = _split_url(text) if "://" in text else _split_host_port(text)
        except (httpx.InvalidURL, ValueError) as exc:
            raise ConfigurationError(f"not a host, host:port or URL: {text!r}") from exc
        if port is not None and not 0 < port < 65536:
            raise ConfigurationError(f"port out of range in allowed host {text!r}")
        host = normalise_host(host.removeprefix("*"))
        return cls(host, port) if host.strip(".") else None

    @property
    def is_suffix(self) -> bool:
        return self.host.startswith(".")

    def matches(self, host: str, port: int) -> bool:
        """Whether a normalised ``host`` on ``port`` is this entry."""
        if self.port is not None and port != self.port:
            return False
        return host.endswith(self.host) if self.is_suffix else host == self.host


@functools.lru_cache(maxsize=1024)
def normalise_host(host: str) -> str:
    """Lower case, no trailing dot, no brackets; an IPv6 literal in its compressed form.
    Remembered per host string: every download asks twice (permitted? trusted?)."""
    host = host.strip().lower().strip("[]").rstrip(".")
    if not might_be_ip(host):
        return host
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def might_be_ip(host: str) -> bool:
    """False for a host that is surely a name (no ``:``, not digits and dots), which
    ``ipaddress`` would refuse only after trying it as IPv4 and as IPv6."""
    return ":" in host or host.replace(".", "").isdigit()


def _split_url(text: str) -> tuple[str, int | None]:
    url = httpx.URL(text)
    if url.scheme not in DEFAULT_PORTS:
        raise ValueError(f"scheme {url.scheme!r}")
    return url.raw_host.decode("ascii"), url.port or DEFAULT_PORTS[url.scheme]


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):  # [v6] or [v6]:port
        host, _, rest = text[1:].partition("]")
        return host, int(rest.removeprefix(":")) if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, None  # a bare name, IPv4 or (unbracketed) IPv6 literal: any port


def _entries(values: Iterable[str | HostEntry]) -> tuple[HostEntry, ...]:
    parsed = (v if isinstance(v, HostEntry) else HostEntry.parse(v) for v in values)
    return tuple(dict.fromkeys(entry for entry in parsed if entry is not None))


BUILTIN_ENTRIES = _entries(DEFAULT_ALLOWED_HOSTS)


@dataclass(frozen=True, slots=True)
class HostAllowList:
    """Hosts (and ports) imagegen may download from; entries as in ``HostEntry.parse``. Only exact
    ``configured`` entries may resolve to private addresses. The built-in entries
    (``replicate.delivery`` and its subdomains) match any port."""

    configured: tuple[HostEntry, ...] = ()
    builtin: tuple[HostEntry, ...] = BUILTIN_ENTRIES

    @classmethod
    def of(
        cls, *configured: str | HostEntry, builtin: Iterable[str | HostEntry] = BUILTIN_ENTRIES
    ) -> HostAllowList:
        """The allow-list of ``configured`` entries plus ``builtin``; raises
        ``ConfigurationError`` for an entry it cannot read."""
        return cls(configured=_entries(configured), builtin=_entries(builtin))

    @classmethod
    def from_settings(cls, settings: Settings, *provider_base_urls: str) -> HostAllowList:
        """The allow-list for ``settings``, plus the base URLs of other configured providers:
        each base URL on its own port, ``download_allowed_hosts`` as written."""
        urls = (settings.replicate_base_url, *provider_base_urls)
        return cls.of(*urls, *settings.download_allowed_hosts)

    def permits(self, host: str, port: int) -> bool:
        """Whether ``host`` on ``port`` may be downloaded from."""
        host = normalise_host(host)
        return any(entry.matches(host, port) for entry in (*self.configured, *self.builtin))

    def trusts(self, host: str, port: int) -> bool:
        """Whether ``host`` on ``port`` is an exact configured entry, so private addresses are
        acceptable."""
        host = normalise_host(host)
        return any(e.matches(host, port) for e in self.configured if not e.is_suffix)


class HostPolicy(Protocol):
    """What a downloader asks before each hop: may it go there, and may that host's name
    resolve to a private address (``HostAllowList`` and ``AnyPublicHost`` answer)."""

    def permits(self, host: str, port: int) -> bool: ...

    def trusts(self, host: str, port: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class AnyPublicHost:
    """Any host on any port, but only at public addresses (every resolved address is checked
    and the connection pinned, as for outputs), except exact ``trusted`` entries, which may be
    private (an operator's own image server, or a test double on loopback)."""

    trusted: HostAllowList = HostAllowList(builtin=())

    @classmethod
    def of(cls, *trusted: str) -> AnyPublicHost:
        """Raises ``ConfigurationError`` for an entry it cannot read."""
        return cls(HostAllowList.of(*trusted, builtin=()))

    def permits(self, host: str, port: int) -> bool:
        return True

    def trusts(self, host: str, port: int) -> bool:
        return self.trusted.trusts(host, port)
