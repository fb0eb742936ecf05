"""HostAllowList matching and trust, and which addresses count as public."""

from __future__ import annotations

import pytest
from tests.support.addresses import PRIVATE_ADDRESSES

from imagegen.config import Settings
from imagegen.netpolicy import HostAllowList, is_public_address

PUBLIC_IP = "93.184.216.34"


# --- allow-list -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("replicate.delivery", True),
        ("pbxt.replicate.delivery", True),
        ("a.b.replicate.delivery", True),
        ("REPLICATE.DELIVERY.", True),
        ("evil-replicate.delivery", False),
        ("replicate.delivery.evil.com", False),
        ("replicatedelivery", False),
        ("cdn.example.com", True),
        ("example.com", False),
        ("img.media.example.org", True),
        ("media.example.org", False),
        ("127.0.0.1", True),
        ("127.0.0.2", False),
    ],
)
def test_allow_list_matching(host: str, allowed: bool) -> None:
    hosts = HostAllowList(configured=("cdn.example.com", ".media.example.org", "127.0.0.1"))
    assert hosts.permits(host) is allowed


def test_only_exact_configured_hosts_are_trusted_with_private_addresses() -> None:
    hosts = HostAllowList(configured=("http://127.0.0.1:9000", "*.media.example.org"))
    assert hosts.trusts("127.0.0.1")
    assert not hosts.trusts("a.media.example.org")
    assert not hosts.trusts("replicate.delivery")


def test_allow_list_from_settings() -> None:
    settings = Settings(
        replicate_base_url="http://127.0.0.1:8765", download_allowed_hosts=["files.example.net"]
    )
    hosts = HostAllowList.from_settings(settings, "https://api.openai.com/v1")
    assert hosts.permits("127.0.0.1")
    assert hosts.permits("api.openai.com")
    assert hosts.permits("files.example.net")
    assert hosts.permits("x.replicate.delivery")
    assert not hosts.permits("api.replicate.com")


# --- addresses --------------------------------------------------------------------------


@pytest.mark.parametrize("address", PRIVATE_ADDRESSES)
def test_private_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", [PUBLIC_IP, "2606:4700::1111", "::ffff:93.184.216.34"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public_address(address)
