"""HostAllowList matching and trust, and which addresses count as public."""

from __future__ import annotations

import pytest
from tests.support.addresses import PRIVATE_ADDRESSES

from imagegen.config import Settings
from imagegen.errors import ConfigurationError
from imagegen.netpolicy import (
    HostAllowList,
    HostEntry,
    is_public_address,
    might_be_ip,
    normalise_host,
)

PUBLIC_IP = "93.184.216.34"


# --- allow-list -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "allowed"),
    [
        ("replicate.delivery", 443, True),
        ("replicate.delivery", 8443, True),  # built-ins are host-only
        ("pbxt.replicate.delivery", 443, True),
        ("a.b.replicate.delivery", 443, True),
        ("REPLICATE.DELIVERY.", 443, True),
        ("evil-replicate.delivery", 443, False),
        ("replicate.delivery.evil.com", 443, False),
        ("replicatedelivery", 443, False),
        ("cdn.example.com", 443, True),
        ("cdn.example.com", 9999, True),  # a bare host: any port
        ("example.com", 443, False),
        ("img.media.example.org", 443, True),
        ("media.example.org", 443, False),
        ("127.0.0.1", 8765, True),
        ("127.0.0.1", 8766, False),
        ("127.0.0.1", 80, False),
        ("127.0.0.2", 8765, False),
        ("files.example.net", 8443, True),
        ("files.example.net", 443, False),
        ("a.cdn.example.io", 443, True),
        ("a.cdn.example.io", 80, False),
        ("::1", 8080, True),
        ("0:0::1", 8080, True),
        ("::1", 8081, False),
        ("api.openai.com", 443, True),
        ("api.openai.com", 80, False),
    ],
)
def test_allow_list_matches_host_and_port(host: str, port: int, allowed: bool) -> None:
    hosts = HostAllowList.of(
        "cdn.example.com",
        ".media.example.org",
        "http://127.0.0.1:8765",
        "files.example.net:8443",
        "*.cdn.example.io:443",
        "[::1]:8080",
        "https://api.openai.com/v1",
    )
    assert hosts.permits(host, port) is allowed


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("http://127.0.0.1:8765", HostEntry("127.0.0.1", 8765)),
        ("http://127.0.0.1", HostEntry("127.0.0.1", 80)),
        ("https://Files.Example.NET./x", HostEntry("files.example.net", 443)),
        ("https://example.com:443/", HostEntry("example.com", 443)),
        ("127.0.0.1:9000", HostEntry("127.0.0.1", 9000)),
        ("127.0.0.1", HostEntry("127.0.0.1", None)),
        ("*.example.com", HostEntry(".example.com", None)),
        (".example.com:8443", HostEntry(".example.com", 8443)),
        ("[::1]:8080", HostEntry("::1", 8080)),
        ("[::1]", HostEntry("::1", None)),
        ("::1", HostEntry("::1", None)),
        ("  ", None),
        ("*.", None),
    ],
)
def test_entry_forms(text: str, entry: HostEntry | None) -> None:
    assert HostEntry.parse(text) == entry


@pytest.mark.parametrize("text", ["example.com:http", "example.com:0", "h:70000", "ftp://h/"])
def test_unreadable_entries_are_configuration_errors(text: str) -> None:
    with pytest.raises(ConfigurationError):
        HostEntry.parse(text)


def test_only_exact_configured_host_and_port_are_trusted_with_private_addresses() -> None:
    hosts = HostAllowList.of("http://127.0.0.1:9000", "*.media.example.org", "10.0.0.8")
    assert hosts.trusts("127.0.0.1", 9000)
    assert not hosts.trusts("127.0.0.1", 9001)
    assert not hosts.trusts("127.0.0.1", 80)
    assert hosts.trusts("10.0.0.8", 1234)  # a bare host is trusted on any port, as written
    assert not hosts.trusts("a.media.example.org", 443)
    assert not hosts.trusts("replicate.delivery", 443)


def test_allow_list_from_settings() -> None:
    settings = Settings(
        replicate_base_url="http://127.0.0.1:8765",
        download_allowed_hosts=["files.example.net", "media.example.org:8443"],
    )
    hosts = HostAllowList.from_settings(settings, "https://api.openai.com/v1")
    assert hosts.permits("127.0.0.1", 8765)
    assert hosts.trusts("127.0.0.1", 8765)
    assert not hosts.permits("127.0.0.1", 22)  # not any port of the provider's host
    assert not hosts.trusts("127.0.0.1", 6379)
    assert hosts.permits("api.openai.com", 443)
    assert not hosts.permits("api.openai.com", 8443)
    assert hosts.permits("files.example.net", 443)
    assert hosts.permits("files.example.net", 8080)
    assert hosts.permits("media.example.org", 8443)
    assert not hosts.permits("media.example.org", 443)
    assert hosts.permits("x.replicate.delivery", 443)
    assert not hosts.permits("api.replicate.com", 443)


def test_default_replicate_base_url_is_allowed_on_https_only() -> None:
    hosts = HostAllowList.from_settings(Settings())
    assert hosts.permits("api.replicate.com", 443)
    assert not hosts.permits("api.replicate.com", 80)


# --- addresses --------------------------------------------------------------------------


@pytest.mark.parametrize("address", PRIVATE_ADDRESSES)
def test_private_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", [PUBLIC_IP, "2606:4700::1111", "::ffff:93.184.216.34"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    "host",
    ["replicate.delivery", "a1.example", "1.2.3.4.example", "", "localhost", "xn--bcher-kva.de"],
)
def test_a_name_is_never_taken_for_an_address(host: str) -> None:
    assert not might_be_ip(host)
    assert normalise_host(host) == host


@pytest.mark.parametrize(
    ("host", "normal"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:10.0.0.1", "::ffff:a00:1"),
        ("1.2.3", "1.2.3"),  # digits and dots, but no address: kept as given
    ],
)
def test_addresses_are_normalised(host: str, normal: str) -> None:
    assert might_be_ip(host.strip("[]").lower())
    assert normalise_host(host) == normal
