"""Where webhooks may go: http(s) URLs whose every resolved address is public, unless it falls in
a network the operator allowed (``IMAGEGEN_WEBHOOK_ALLOWED_NETWORKS``). The address checks are
``imagegen.netpolicy``'s, so downloads and webhooks refuse the same private, loopback,
link-local, multicast and reserved ranges (IPv4 inside IPv6 included).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx

from imagegen.errors import InvalidRequest
from imagegen.netpolicy import Resolver, is_public_address, system_resolver

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_LENGTH = 2048


class AddressRefused(Exception):
    """The receiver's host resolves to an address webhooks may not reach, or to none."""


def check_webhook_url(url: str, allowed: Sequence[Network] = ()) -> str:
    """The URL if it may receive webhooks, as far as can be told without DNS.

    Raises ``InvalidRequest`` naming the ``webhook`` field: not http(s), no host, credentials in
    the URL, too long, or a literal IP address outside the policy.
    """

    def refuse(why: str) -> InvalidRequest:
        return InvalidRequest(f"webhook: {why}", field="webhook")

    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise refuse("not a valid URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise refuse("must be an http:// or https:// URL with a host")
    if parsed.userinfo:
        raise refuse("must not contain credentials")
    literal = _ip_literal(parsed.host)
    if literal is not None and not AddressPolicy(tuple(allowed)).permits(literal):
        raise refuse(f"{literal} is a private, loopback or reserved address")
    return url


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Public addresses, plus the ``allowed`` networks."""

    allowed: tuple[Network, ...] = ()
    resolver: Resolver = system_resolver

    @classmethod
    def of(cls, networks: Iterable[Network], resolver: Resolver = system_resolver) -> AddressPolicy:
        return cls(tuple(networks), resolver)

    def permits(self, address: str) -> bool:
        if is_public_address(address):
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in self.allowed)

    async def address_for(self, host: str, port: int) -> str:
        """The address to connect to: every address ``host`` resolves to must be permitted, so
        a second DNS answer cannot swap in a private one; raises ``AddressRefused``."""
        literal = _ip_literal(host)
        if literal is not None:
            addresses: Sequence[str] = [literal]
        else:
            try:
                addresses = await self.resolver(host, port)
            except OSError as exc:
                raise AddressRefused(f"could not resolve {host}") from exc
        if not addresses:
            raise AddressRefused(f"could not resolve {host}")
        for address in addresses:
            if not self.permits(address):
                raise AddressRefused(
                    f"{host} resolves to {address}, a private, loopback or reserved address "
                    "(see IMAGEGEN_WEBHOOK_ALLOWED_NETWORKS)"
                )
        return addresses[0].split("%", 1)[0]
