"""SafeFetcher: allow-list, address checks, redirects, size and time limits, streaming."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.addresses import PRIVATE_ADDRESSES

from imagegen import fetch as fetch_module
from imagegen.download_retry import DownloadRetry
from imagegen.errors import ImageFetchError
from imagegen.fetch import (
    _PLAIN_URL,
    MEMORY_BYTES,
    FetchedBytes,
    FetchedFile,
    SafeFetcher,
    _parse_url,
    _pinned,
)
from imagegen.netpolicy import Resolver
from imagegen.retry_after import parse_retry_after
from imagegen.upstream import AiohttpUpstream, HttpxUpstream, Upstream

Handler = Callable[[httpx.Request], httpx.Response]
PUBLIC_IP = "93.184.216.34"
BODY = b"\x89PNG not really, but bytes are bytes"


def fake_resolver(table: dict[str, Sequence[str]], calls: list[str] | None = None) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


DEFAULT_DNS = {
    "replicate.delivery": [PUBLIC_IP],
    "pbxt.replicate.delivery": [PUBLIC_IP],
    "cdn.example.com": [PUBLIC_IP],
}


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=BODY)


class FakeClock:
    """Monotonic seconds that only ``sleep`` moves; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_fetcher(
    handler: Handler,
    *,
    allowed: Sequence[str] = (),
    dns: dict[str, Sequence[str]] | None = None,
    max_bytes: int = 1024 * 1024,
    timeout: float = 5.0,
    resolver_calls: list[str] | None = None,
    headers: dict[str, str] | None = None,
    clock: FakeClock | None = None,
    retry: DownloadRetry | None = None,
    draw: float = 0.5,
) -> SafeFetcher:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler), headers=headers)
    clock = clock or FakeClock()
    return SafeFetcher(
        client,
        allowed_hosts=allowed,
        max_bytes=max_bytes,
        timeout=timeout,
        resolver=fake_resolver(DEFAULT_DNS if dns is None else dns, resolver_calls),
        retry=retry,
        sleep=clock.sleep,
        clock=clock,
        draw=lambda: draw,
    )


async def fetch_error(fetcher: SafeFetcher, url: str, tmp_path: Path) -> ImageFetchError:
    with pytest.raises(ImageFetchError) as info:
        await fetcher.fetch(url, tmp_path)
    assert list(tmp_path.iterdir()) == [], "no spool file may be left behind"
    return info.value


# --- allow-list -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["https://replicate.delivery/a.png", "https://pbxt.replicate.delivery/x/out-0.webp"]
)
async def test_replicate_delivery_is_allowed(url: str, tmp_path: Path) -> None:
    fetched = await make_fetcher(ok).fetch(url, tmp_path)
    assert fetched.path.read_bytes() == BODY
    assert fetched.sha256 == hashlib.sha256(BODY).hexdigest()
    assert fetched.size_bytes == len(BODY)
    assert fetched.path.parent == tmp_path


@pytest.mark.parametrize(
    "url",
    [
        "https://evil-replicate.delivery/a.png",
        "https://replicate.delivery.evil.com/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/a.png",
    ],
)
async def test_hosts_off_the_list_are_refused(url: str, tmp_path: Path) -> None:
    error = await fetch_error(make_fetcher(ok), url, tmp_path)
    assert "host not allowed" in error.message


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://replicate.delivery/a.png", "https://user:pw@replicate.delivery/"],
)
async def test_odd_urls_are_refused(url: str, tmp_path: Path) -> None:
    await fetch_error(make_fetcher(ok), url, tmp_path)


# --- addresses --------------------------------------------------------------------------


@pytest.mark.parametrize("address", PRIVATE_ADDRESSES)
async def test_allowed_host_resolving_to_private_address_is_refused(
    address: str, tmp_path: Path
) -> None:
    fetcher = make_fetcher(ok, dns={"replicate.delivery": [address]})
    error = await fetch_error(fetcher, "https://replicate.delivery/a.png", tmp_path)
    assert "private or reserved address" in error.message
    assert error.provider == "replicate.delivery"


async def test_every_resolved_address_is_checked(tmp_path: Path) -> None:
    fetcher = make_fetcher(ok, dns={"replicate.delivery": [PUBLIC_IP, "10.0.0.7"]})
    error = await fetch_error(fetcher, "https://replicate.delivery/a.png", tmp_path)
    assert "10.0.0.7" in error.message


async def test_unresolvable_host(tmp_path: Path) -> None:
    error = await fetch_error(make_fetcher(ok, dns={}), "https://replicate.delivery/a", tmp_path)
    assert "could not resolve" in error.message


async def test_request_is_pinned_to_the_checked_address(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(request)

    fetcher = make_fetcher(handler, headers={"Authorization": "Bearer r8_secret"})
    await fetcher.fetch("https://pbxt.replicate.delivery:8443/o.png?x=1", tmp_path)
    (request,) = seen
    assert request.url.host == PUBLIC_IP
    assert request.url.port == 8443
    assert request.url.raw_path == b"/o.png?x=1"
    assert request.headers["host"] == "pbxt.replicate.delivery:8443"
    assert request.extensions["sni_hostname"] == "pbxt.replicate.delivery"
    assert "authorization" not in request.headers
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["user-agent"].startswith("imagegen/")


@pytest.mark.parametrize(
    "url",
    [
        "https://replicate.delivery/xezq/abc/out-0.webp",
        "https://pbxt.replicate.delivery:8443/o.png?x=1&y=%20z",
        "http://cdn.example.com/a%2Fb/c d.png?q=\u00fc",
        "https://cdn.example.com:443/x",
        "http://cdn.example.com:80/x",
        "https://Example.COM./a/../b?",
    ],
)
@pytest.mark.parametrize("address", [PUBLIC_IP, "2606:4700::6810:84e5", "::ffff:93.184.216.34"])
def test_the_pinned_url_is_the_url_with_the_address_for_its_host(url: str, address: str) -> None:
    parsed = httpx.URL(url)
    assert _pinned(_parse_url(url), address) == str(parsed.copy_with(host=address))


@pytest.mark.parametrize(
    ("url", "address", "expected"),
    [
        ("https://cdn.example.com", PUBLIC_IP, f"https://{PUBLIC_IP}/"),  # the path sent: /
        ("https://cdn.example.com/a?b#frag", "2606::1", "https://[2606::1]/a?b"),  # never sent
    ],
)
def test_the_pinned_url_is_what_is_sent(url: str, address: str, expected: str) -> None:
    assert _pinned(_parse_url(url), address) == expected


@pytest.mark.parametrize(
    ("client", "expected"),
    [  # an overall limit of 5 s: a phase limit as long or longer can never fire first
        (httpx.Timeout(30.0, connect=2.0), {"connect": 2.0, "read": None, "pool": None}),
        (httpx.Timeout(5.0, read=1.5), {"connect": None, "read": 1.5, "pool": None}),
        (httpx.Timeout(None, pool=4.0), {"connect": None, "read": None, "pool": 4.0}),
    ],
)
async def test_only_phase_limits_shorter_than_the_deadline_are_set(
    tmp_path: Path, client: httpx.Timeout, expected: dict[str, float | None]
) -> None:
    seen: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return ok(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), timeout=client)
    fetcher = SafeFetcher(
        http, allowed_hosts=(), max_bytes=100, timeout=5.0, resolver=fake_resolver(DEFAULT_DNS)
    )
    await fetcher.fetch_body("https://replicate.delivery/a.png", tmp_path)
    assert {k: seen[0][k] for k in expected} == expected


async def test_client_auth_and_cookies_are_not_sent(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(request)

    client = httpx.AsyncClient(
        transport=httpx.MockTransport(handler), auth=("user", "pw"), cookies={"session": "s"}
    )
    fetcher = SafeFetcher(
        client, allowed_hosts=["127.0.0.1"], max_bytes=100, timeout=5, resolver=fake_resolver({})
    )
    await fetcher.fetch("http://127.0.0.1/a.png", tmp_path)
    assert "authorization" not in seen[0].headers
    assert "cookie" not in seen[0].headers


async def test_compressed_body_is_refused(tmp_path: Path) -> None:
    fetcher = make_fetcher(
        lambda r: httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"\x1f\x8b")
    )
    error = await fetch_error(fetcher, "https://replicate.delivery/a.png", tmp_path)
    assert "compressed" in error.message


async def test_configured_loopback_host_is_allowed_without_resolving(tmp_path: Path) -> None:
    calls: list[str] = []
    fetcher = make_fetcher(ok, allowed=["http://127.0.0.1:8765"], resolver_calls=calls)
    fetched = await fetcher.fetch("http://127.0.0.1:8765/files/a.png", tmp_path)
    assert fetched.size_bytes == len(BODY)
    assert calls == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8766/a.png", "http://127.0.0.1/a.png"])
async def test_other_ports_of_a_configured_host_are_refused(url: str, tmp_path: Path) -> None:
    calls: list[str] = []
    fetcher = make_fetcher(ok, allowed=["http://127.0.0.1:8765"], resolver_calls=calls)
    error = await fetch_error(fetcher, url, tmp_path)
    assert "refusing to download from 127.0.0.1: host not allowed on port" in error.message
    assert calls == []


async def test_redirect_to_another_port_of_a_configured_host_is_refused(tmp_path: Path) -> None:
    fetcher = make_fetcher(redirecting("http://127.0.0.1:6379/"), allowed=["http://127.0.0.1:8765"])
    error = await fetch_error(fetcher, "http://127.0.0.1:8765/start", tmp_path)
    assert error.message == "refusing to download from 127.0.0.1: host not allowed on port 6379"


async def test_host_port_entry_allows_only_that_port(tmp_path: Path) -> None:
    fetcher = make_fetcher(ok, allowed=["cdn.example.com:8443"])
    fetched = await fetcher.fetch("https://cdn.example.com:8443/a.png", tmp_path / "ok")
    assert fetched.size_bytes == len(BODY)
    (refused := tmp_path / "refused").mkdir()
    error = await fetch_error(fetcher, "https://cdn.example.com/a.png", refused)
    assert "host not allowed on port 443" in error.message


# --- redirects --------------------------------------------------------------------------


def redirecting(location: str, final: Handler = ok) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/start":
            return httpx.Response(302, headers={"Location": location})
        return final(request)

    return handler


async def test_redirect_to_allowed_host_is_followed(tmp_path: Path) -> None:
    fetcher = make_fetcher(redirecting("https://pbxt.replicate.delivery/final.png"))
    fetched = await fetcher.fetch("https://replicate.delivery/start", tmp_path)
    assert fetched.url == "https://pbxt.replicate.delivery/final.png"
    assert fetched.path.read_bytes() == BODY


async def test_relative_redirect_is_followed(tmp_path: Path) -> None:
    fetcher = make_fetcher(redirecting("/final.png"))
    fetched = await fetcher.fetch("https://replicate.delivery/start", tmp_path)
    assert fetched.size_bytes == len(BODY)


async def test_redirect_to_private_address_is_refused(tmp_path: Path) -> None:
    dns = {**DEFAULT_DNS, "internal.replicate.delivery": ["10.0.0.5"]}
    fetcher = make_fetcher(redirecting("http://internal.replicate.delivery/secret"), dns=dns)
    error = await fetch_error(fetcher, "https://replicate.delivery/start", tmp_path)
    assert "private or reserved address" in error.message


@pytest.mark.parametrize(
    "location",
    ["http://169.254.169.254/latest/meta-data/", "http://[::1]/x", "file:///etc/passwd"],
)
async def test_redirect_off_the_list_is_refused(location: str, tmp_path: Path) -> None:
    fetcher = make_fetcher(redirecting(location))
    await fetch_error(fetcher, "https://replicate.delivery/start", tmp_path)


async def test_redirect_loops_are_cut_short(tmp_path: Path) -> None:
    fetcher = make_fetcher(redirecting("/start"))
    error = await fetch_error(fetcher, "https://replicate.delivery/start", tmp_path)
    assert "too many redirects" in error.message


# --- statuses and transport errors ------------------------------------------------------


@pytest.mark.parametrize("status", [404, 410])
async def test_missing_output_says_it_expired(status: int, tmp_path: Path) -> None:
    fetcher = make_fetcher(lambda request: httpx.Response(status))
    error = await fetch_error(fetcher, "https://replicate.delivery/gone.png", tmp_path)
    assert f"HTTP {status}" in error.message
    assert "no longer available" in error.message


class Flaky:
    """A handler that fails ``failures`` times (a status, or a raised transport error), then
    answers 200 with ``BODY``; records every request."""

    def __init__(
        self, failure: int | type[httpx.TransportError], failures: int = 1, **headers: str
    ):
        self.failure, self.failures, self.headers = failure, failures, headers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) > self.failures:
            return ok(request)
        if isinstance(self.failure, int):
            return httpx.Response(self.failure, headers=self.headers, text="upstream broke")
        raise self.failure("simulated", request=request)


URL = "https://replicate.delivery/pbxt/out-0.png"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_transient_status_is_retried(status: int, tmp_path: Path) -> None:
    handler, clock = Flaky(status), FakeClock()
    fetched = await make_fetcher(handler, clock=clock).fetch(URL, tmp_path)
    assert fetched.path.read_bytes() == BODY
    assert len(handler.requests) == 2
    assert clock.sleeps == [0.2]  # the first backoff step (no jitter at draw=0.5)
    assert list(tmp_path.iterdir()) == [fetched.path]


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.ReadError,
        httpx.WriteError,
        httpx.RemoteProtocolError,
        httpx.PoolTimeout,
    ],
)
async def test_connection_errors_and_timeouts_are_retried(
    error: type[httpx.TransportError], tmp_path: Path
) -> None:
    handler = Flaky(error, failures=2)
    fetched = await make_fetcher(handler).fetch(URL, tmp_path)
    assert fetched.size_bytes == len(BODY)
    assert len(handler.requests) == 3


async def test_reset_mid_body_is_retried_from_scratch(tmp_path: Path) -> None:
    calls: list[int] = []

    async def broken() -> AsyncIterator[bytes]:
        yield b"half of a"
        raise httpx.ReadError("connection reset by peer")

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, content=broken()) if len(calls) == 1 else ok(request)

    fetched = await make_fetcher(handler).fetch(URL, tmp_path)
    assert fetched.path.read_bytes() == BODY  # nothing of the broken body is kept
    assert fetched.sha256 == hashlib.sha256(BODY).hexdigest()
    assert list(tmp_path.iterdir()) == [fetched.path]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 410, 416, 451])
async def test_other_client_errors_fail_fast(status: int, tmp_path: Path) -> None:
    handler, clock = Flaky(status, failures=10), FakeClock()
    error = await fetch_error(make_fetcher(handler, clock=clock), URL, tmp_path)
    assert f"HTTP {status}" in error.message
    assert "attempts" not in error.message
    assert len(handler.requests) == 1
    assert clock.sleeps == []


async def test_attempts_are_bounded_and_back_off_exponentially(tmp_path: Path) -> None:
    handler, clock = Flaky(503, failures=100), FakeClock()
    policy = DownloadRetry(max_attempts=5, base_delay=0.5, max_delay=2.0)
    fetcher = make_fetcher(handler, clock=clock, retry=policy, timeout=60)
    error = await fetch_error(fetcher, URL, tmp_path)
    assert error.message == "download from replicate.delivery failed with HTTP 503 (5 attempts)"
    assert error.provider == "replicate.delivery"
    assert len(handler.requests) == 5
    assert clock.sleeps == [0.5, 1.0, 2.0, 2.0]  # capped at max_delay


async def test_last_transport_error_is_the_cause(tmp_path: Path) -> None:
    handler = Flaky(httpx.ConnectError, failures=100)
    error = await fetch_error(make_fetcher(handler), URL, tmp_path)
    assert "connection error (ConnectError) (4 attempts)" in error.message
    assert isinstance(error.__cause__, httpx.ConnectError)
    assert len(handler.requests) == DownloadRetry().max_attempts


@pytest.mark.parametrize(("draw", "factor"), [(0.0, 0.5), (0.999999, 1.5)])
async def test_backoff_is_jittered(draw: float, factor: float, tmp_path: Path) -> None:
    clock = FakeClock()
    await make_fetcher(Flaky(502), clock=clock, draw=draw).fetch(URL, tmp_path)
    assert clock.sleeps == [pytest.approx(0.2 * factor, rel=1e-4)]


async def test_retries_stay_within_the_time_limit(tmp_path: Path) -> None:
    handler, clock = Flaky(500, failures=100), FakeClock()
    policy = DownloadRetry(max_attempts=50, base_delay=0.2, max_delay=2.0, jitter=0.0)
    fetcher = make_fetcher(handler, clock=clock, retry=policy, timeout=3.5)
    error = await fetch_error(fetcher, URL, tmp_path)
    assert "HTTP 500 (5 attempts)" in error.message
    assert clock.sleeps == [0.2, 0.4, 0.8, 1.6]  # 3 s spent: the next 2 s would pass 3.5 s
    assert len(handler.requests) == 5


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    handler, clock = Flaky(429, **{"Retry-After": "3"}), FakeClock()
    fetched = await make_fetcher(handler, clock=clock, timeout=10).fetch(URL, tmp_path)
    assert fetched.size_bytes == len(BODY)
    assert clock.sleeps == [3.0]


async def test_short_retry_after_does_not_shorten_the_backoff(tmp_path: Path) -> None:
    handler, clock = Flaky(503, **{"Retry-After": "0"}), FakeClock()
    await make_fetcher(handler, clock=clock).fetch(URL, tmp_path)
    assert clock.sleeps == [0.2]


async def test_retry_after_past_the_limit_gives_up_at_once(tmp_path: Path) -> None:
    handler, clock = Flaky(503, failures=100, **{"Retry-After": "3600"}), FakeClock()
    error = await fetch_error(make_fetcher(handler, clock=clock, timeout=60), URL, tmp_path)
    assert error.message == "download from replicate.delivery failed with HTTP 503"
    assert len(handler.requests) == 1
    assert clock.sleeps == []


NOW = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("Fri, 27 Nov 2026 08:00:30 GMT", 30.0),
        ("Fri, 27 Nov 2026 07:59:00 GMT", 0.0),  # a date in the past: no wait
        ("-3", None),
        ("nan", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_header_forms(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=lambda: NOW) == seconds


async def test_a_retry_starts_over_at_the_original_url(tmp_path: Path) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path == "/start":
            return httpx.Response(302, headers={"Location": "/final.png"})
        return httpx.Response(503) if len(paths) < 3 else ok(request)

    fetched = await make_fetcher(handler).fetch("https://replicate.delivery/start", tmp_path)
    assert fetched.url == "https://replicate.delivery/final.png"
    assert paths == ["/start", "/final.png", "/start", "/final.png"]


async def test_refusals_of_our_own_are_not_retried(tmp_path: Path) -> None:
    handler = Flaky(200)
    big = make_fetcher(lambda r: httpx.Response(200, content=b"x" * 200), max_bytes=100)
    assert "larger than" in (await fetch_error(big, URL, tmp_path)).message
    calls: list[str] = []
    private = make_fetcher(handler, dns={"replicate.delivery": ["10.0.0.1"]}, resolver_calls=calls)
    await fetch_error(private, "https://replicate.delivery/a.png", tmp_path)
    assert calls == ["replicate.delivery"]
    assert handler.requests == []


# --- size and time limits ---------------------------------------------------------------


async def test_declared_length_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    pulled: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        pulled.append(1)
        yield b"x" * 10

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "5000"}, content=body())

    error = await fetch_error(
        make_fetcher(handler, max_bytes=1000), "https://replicate.delivery/a", tmp_path
    )
    assert "larger than 1000 bytes" in error.message
    assert pulled == []


def endless_body(pulled: list[int]) -> Callable[[], AsyncIterator[bytes]]:
    """A body that never ends; each chunk pulled from it is counted in ``pulled``."""

    async def endless() -> AsyncIterator[bytes]:
        while True:
            pulled.append(1)
            yield b"x" * 256

    return endless


async def test_body_over_the_cap_is_aborted_while_streaming(tmp_path: Path) -> None:
    pulled: list[int] = []
    endless = endless_body(pulled)

    def handler(request: httpx.Request) -> httpx.Response:
        # The header lies: it claims a small body, then the stream never ends.
        return httpx.Response(200, headers={"Content-Length": "100"}, content=endless())

    fetcher = make_fetcher(handler, max_bytes=1000)
    error = await fetch_error(fetcher, "https://replicate.delivery/a", tmp_path)
    assert "larger than 1000 bytes" in error.message
    assert len(pulled) <= 5


async def test_body_exactly_at_the_cap_is_accepted(tmp_path: Path) -> None:
    fetcher = make_fetcher(lambda r: httpx.Response(200, content=b"y" * 1000), max_bytes=1000)
    assert (await fetcher.fetch("https://replicate.delivery/a", tmp_path)).size_bytes == 1000


async def test_slow_body_times_out(tmp_path: Path) -> None:
    async def slow() -> AsyncIterator[bytes]:
        yield b"x"
        await asyncio.sleep(10)
        yield b"y"

    fetcher = make_fetcher(lambda r: httpx.Response(200, content=slow()), timeout=0.2)
    error = await fetch_error(fetcher, "https://replicate.delivery/a", tmp_path)
    assert "timed out after 0.2s" in error.message


async def test_slow_dns_times_out(tmp_path: Path) -> None:
    async def hang(host: str, port: int) -> Sequence[str]:
        await asyncio.sleep(10)
        return [PUBLIC_IP]

    client = httpx.AsyncClient(transport=httpx.MockTransport(ok))
    fetcher = SafeFetcher(client, allowed_hosts=(), max_bytes=100, timeout=0.1, resolver=hang)
    error = await fetch_error(fetcher, "https://replicate.delivery/a", tmp_path)
    assert "timed out" in error.message


BIG, CHUNK = 20 * 1024 * 1024, 64 * 1024


async def fetch_big(
    tmp_path: Path, fetch: Callable[[SafeFetcher], Callable[[str, Path], Any]]
) -> tuple[Any, int]:
    """``fetch`` of a 20 MiB body of no declared length, and the peak memory traced meanwhile."""

    async def body() -> AsyncIterator[bytes]:
        for i in range(BIG // CHUNK):
            yield bytes([i % 256]) * CHUNK

    fetcher = make_fetcher(lambda r: httpx.Response(200, content=body()), max_bytes=BIG)
    tracemalloc.start()
    try:
        fetched = await fetch(fetcher)("https://replicate.delivery/big.png", tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return fetched, peak


async def test_memory_stays_flat_for_a_large_body(tmp_path: Path) -> None:
    fetched, peak = await fetch_big(tmp_path, lambda fetcher: fetcher.fetch)
    assert fetched.size_bytes == BIG
    assert fetched.path.stat().st_size == BIG
    assert peak < BIG / 10, f"peak {peak} bytes for a {BIG} byte body"


# --- a real server on loopback ----------------------------------------------------------


@pytest.fixture(params=["aiohttp", "httpx"])
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[Upstream]:
    """Each kind of upstream imagegen downloads through, as ``services`` builds them."""
    timeout, limits = httpx.Timeout(10.0), httpx.Limits(max_connections=10)
    made: Upstream = (
        AiohttpUpstream(timeout=timeout, limits=limits)
        if request.param == "aiohttp"
        else HttpxUpstream(httpx.AsyncClient(timeout=timeout, limits=limits))
    )
    yield made
    await made.aclose()


async def serve_chunked(chunks: Iterator[bytes] | Sequence[bytes]) -> tuple[asyncio.Server, int]:
    """An HTTP/1.1 server that answers every request with a chunked 200 of ``chunks``."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        try:
            for part in chunks:
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(respond, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_streams_from_a_real_loopback_server(upstream: Upstream, tmp_path: Path) -> None:
    parts = [bytes([i]) * 100_000 for i in range(30)]
    server, port = await serve_chunked(parts)
    async with server:
        fetcher = SafeFetcher(
            upstream, allowed_hosts=["127.0.0.1"], max_bytes=10_000_000, timeout=10
        )
        fetched = await fetcher.fetch(f"http://127.0.0.1:{port}/out.png", tmp_path)
    body = b"".join(parts)
    assert fetched.size_bytes == len(body)
    assert fetched.sha256 == hashlib.sha256(body).hexdigest()
    assert fetched.path.read_bytes() == body


async def test_real_server_without_length_is_cut_at_the_cap(
    upstream: Upstream, tmp_path: Path
) -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b"z" * 65536

    server, port = await serve_chunked(endless())
    async with server:
        fetcher = SafeFetcher(
            upstream, allowed_hosts=["127.0.0.1"], max_bytes=1_000_000, timeout=10
        )
        error = await fetch_error(fetcher, f"http://127.0.0.1:{port}/big", tmp_path)
    assert "larger than 1000000 bytes" in error.message


async def test_real_server_that_resets_the_first_connection(
    upstream: Upstream, tmp_path: Path
) -> None:
    connections: list[int] = []

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        if len(connections) == 1:  # headers promise 1000 bytes; 10 come, then the socket closes
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(respond, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    policy = DownloadRetry(base_delay=0.01)
    async with server:
        fetcher = SafeFetcher(
            upstream, allowed_hosts=["127.0.0.1"], max_bytes=10_000, timeout=10, retry=policy
        )
        fetched = await fetcher.fetch(f"http://127.0.0.1:{port}/out.png", tmp_path)
    assert fetched.path.read_bytes() == BODY
    assert len(connections) == 2
    assert list(tmp_path.iterdir()) == [fetched.path]


async def test_loopback_is_refused_unless_configured(upstream: Upstream, tmp_path: Path) -> None:
    server, port = await serve_chunked([b"secret"])
    async with server:
        fetcher = SafeFetcher(
            upstream,
            allowed_hosts=[".internal.test"],
            max_bytes=1000,
            timeout=5,
            resolver=fake_resolver({"admin.internal.test": ["127.0.0.1"]}),
        )
        error = await fetch_error(fetcher, f"http://admin.internal.test:{port}/", tmp_path)
    assert "private or reserved address 127.0.0.1" in error.message


async def test_the_spool_directory_is_made_when_missing(upstream: Upstream, tmp_path: Path) -> None:
    server, port = await serve_chunked([BODY])
    staging = tmp_path / "a" / "staging"
    async with server:
        fetcher = SafeFetcher(upstream, allowed_hosts=["127.0.0.1"], max_bytes=10_000, timeout=10)
        fetched = await fetcher.fetch(f"http://127.0.0.1:{port}/out.png", staging)
    assert fetched.path.parent == staging
    assert fetched.path.name.startswith(".fetch-")
    assert fetched.path.name.endswith(".part")
    assert fetched.path.stat().st_mode & 0o777 == 0o600
    assert fetched.path.read_bytes() == BODY


# --- fetch_body: small bodies in memory, large ones streamed to a file -------------------


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".fetch-*.part")) if directory.exists() else []


async def test_a_small_body_is_kept_in_memory_and_no_file_is_made(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    fetched = await make_fetcher(ok).fetch_body("https://replicate.delivery/a.png", staging)
    assert isinstance(fetched, FetchedBytes)
    assert fetched.data == BODY
    assert fetched.sha256 == hashlib.sha256(BODY).hexdigest()
    assert fetched.size_bytes == len(BODY)
    assert fetched.url == "https://replicate.delivery/a.png"
    assert not staging.exists(), "not even the staging folder is made"


async def test_a_body_of_exactly_memory_bytes_stays_in_memory(tmp_path: Path) -> None:
    body = b"m" * 1000

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(body), 300):
            yield body[start : start + 300]

    fetcher = make_fetcher(lambda r: httpx.Response(200, content=chunked()))
    fetched = await fetcher.fetch_body("https://replicate.delivery/a", tmp_path, memory_bytes=1000)
    assert isinstance(fetched, FetchedBytes)
    assert fetched.data == body
    assert spool_files(tmp_path) == []


async def test_a_declared_large_body_goes_to_a_file_from_its_first_byte(tmp_path: Path) -> None:
    seen: list[list[Path]] = []
    chunk = b"L" * 100

    async def body() -> AsyncIterator[bytes]:
        for _ in range(5):
            seen.append(spool_files(tmp_path))  # what exists before each chunk is sent
            yield chunk

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "500"}, content=body())

    fetched = await make_fetcher(handler).fetch_body(
        "https://replicate.delivery/a", tmp_path, memory_bytes=499
    )
    assert isinstance(fetched, FetchedFile)
    assert all(len(files) == 1 for files in seen), "the file exists before the first chunk"
    assert fetched.path.read_bytes() == chunk * 5
    assert fetched.sha256 == hashlib.sha256(chunk * 5).hexdigest()
    assert fetched.size_bytes == 500
    assert spool_files(tmp_path) == [fetched.path]


async def test_an_undeclared_body_spills_to_a_file_once_past_memory_bytes(tmp_path: Path) -> None:
    seen: list[int] = []
    parts = [bytes([i]) * 300 for i in range(8)]

    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            seen.append(len(spool_files(tmp_path)))
            yield part

    fetcher = make_fetcher(lambda r: httpx.Response(200, content=body()))
    fetched = await fetcher.fetch_body("https://replicate.delivery/a", tmp_path, memory_bytes=1000)
    whole = b"".join(parts)
    assert isinstance(fetched, FetchedFile)
    # 900 bytes fit; the 4th part passes 1000 and spills: parts 5-8 find the file there.
    assert seen == [0, 0, 0, 0, 1, 1, 1, 1]
    assert fetched.path.read_bytes() == whole
    assert fetched.sha256 == hashlib.sha256(whole).hexdigest()
    assert fetched.size_bytes == len(whole)


@pytest.mark.parametrize("declared", [True, False])
async def test_fetch_body_refuses_a_body_over_the_cap(tmp_path: Path, declared: bool) -> None:
    pulled: list[int] = []
    endless = endless_body(pulled)

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Length": "100"} if declared else {}  # a lie, or nothing
        return httpx.Response(200, headers=headers, content=endless())

    for memory_bytes in (100_000, 500):  # the cap hit in memory, or after the spill
        with pytest.raises(ImageFetchError, match="larger than 1000 bytes"):
            await make_fetcher(handler, max_bytes=1000).fetch_body(
                "https://replicate.delivery/a", tmp_path, memory_bytes=memory_bytes
            )
        assert list(tmp_path.iterdir()) == [], "no spool file may be left behind"
    assert len(pulled) <= 10


async def test_fetch_body_refuses_a_declared_length_over_the_cap_before_reading(
    tmp_path: Path,
) -> None:
    pulled: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        pulled.append(1)
        yield b"x"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "5000"}, content=body())

    with pytest.raises(ImageFetchError, match="larger than 1000 bytes"):
        await make_fetcher(handler, max_bytes=1000).fetch_body(
            "https://replicate.delivery/a", tmp_path
        )
    assert pulled == []
    assert list(tmp_path.iterdir()) == []


async def test_fetch_body_memory_stays_flat_for_a_large_undeclared_body(tmp_path: Path) -> None:
    fetched, peak = await fetch_big(tmp_path, lambda fetcher: fetcher.fetch_body)
    assert isinstance(fetched, FetchedFile)
    assert fetched.path.stat().st_size == BIG
    assert peak < MEMORY_BYTES + 4 * CHUNK, f"peak {peak} bytes for a {BIG} byte body"


async def test_fetch_body_from_a_real_loopback_server(upstream: Upstream, tmp_path: Path) -> None:
    small, large = [b"s" * 700, b"t" * 300], [bytes([i]) * 100_000 for i in range(30)]
    for parts, kind in ((small, FetchedBytes), (large, FetchedFile)):
        server, port = await serve_chunked(parts)
        async with server:
            fetcher = SafeFetcher(
                upstream, allowed_hosts=["127.0.0.1"], max_bytes=10_000_000, timeout=10
            )
            fetched = await fetcher.fetch_body(f"http://127.0.0.1:{port}/out.png", tmp_path)
        body = b"".join(parts)
        assert isinstance(fetched, kind)
        assert fetched.size_bytes == len(body)
        assert fetched.sha256 == hashlib.sha256(body).hexdigest()
        got = fetched.data if isinstance(fetched, FetchedBytes) else fetched.path.read_bytes()
        assert got == body


# --- URL parsing: the plain-URL fast path reads every URL as httpx does ------------------


def _as_httpx(url: str) -> tuple[str, str, int | None, str, str, str] | None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host or parsed.userinfo:
        return None
    return (
        parsed.scheme,
        parsed.raw_host.decode("ascii").lower().rstrip("."),
        parsed.port,
        parsed.netloc.decode("ascii"),
        parsed.raw_path.decode("ascii"),
        str(parsed),
    )


def _as_fetcher(url: str) -> tuple[str, str, int | None, str, str, str] | None:
    try:
        return tuple(_parse_url(url))  # type: ignore[return-value]
    except ImageFetchError:
        return None


PLAIN_URLS = [
    "https://replicate.delivery/xezq/AbCdEf0123/out-0.webp",
    "https://pbxt.replicate.delivery/a/b/out-1.png?x=1&y=2",
    "http://127.0.0.1:8765/files/a.png",
    "http://0.0.0.0:1/a",
    "https://a-b.example.com:8443/~user/(x)/it's;p=1,a*b+c!$@:=/?q=/?&r",
    "https://cdn.example.com/a?",
    "https://cdn.example.com/a/.b/..c/...",
]
ODD_URLS = [
    "https://Replicate.delivery/a",  # upper case: normalised by httpx
    "https://replicate.delivery./a",  # trailing dot
    "https://replicate.delivery:443/a",  # default port, dropped
    "http://replicate.delivery:80/a",
    "https://replicate.delivery:0/a",
    "https://replicate.delivery:08443/a",
    "https://replicate.delivery:70000/a",
    "https://replicate.delivery",  # empty path
    "https://replicate.delivery?x=1",
    "https://replicate.delivery/a/../b",  # dot segments, resolved
    "https://replicate.delivery/./b",
    "https://replicate.delivery/a/..",
    "https://replicate.delivery/a%2Fb",  # escapes
    "https://replicate.delivery/a%zz",
    "https://replicate.delivery/a b",  # quoted
    "https://replicate.delivery/a#frag",
    "https://user:pw@replicate.delivery/a",
    "https://user@replicate.delivery/a",
    "https://replicate.delivery\\@evil.com/a",
    "https://evil.com\\.replicate.delivery/a",
    "https://999.1.1.1/a",  # IPv4-shaped, invalid
    "https://01.2.3.4/a",
    "https://1a2b3c4/a",
    "https://1.2.3.4.5/a",
    "https://256.256.256.256/a",
    "https://[::1]:8443/a",
    "https://[2606:4700::6810:84e5]/a",
    "https://bücher.example/a",
    "https://xn--bcher-kva.example/a",
    "ftp://replicate.delivery/a",
    "HTTPS://replicate.delivery/a",
    "https:///a",
    "https://replicate.delivery/a\n",
    "https://replicate.delivery/a\t/b",
    "https://replicate.delivery/ä",
    "https://replicate.delivery/a?ä=1",
    "https://replicate.delivery/a?x=%41",
    "https://replicate.delivery/{a}",
    "//replicate.delivery/a",
]


@pytest.mark.parametrize("url", PLAIN_URLS + ODD_URLS)
def test_urls_are_read_as_httpx_reads_them(url: str) -> None:
    assert _as_fetcher(url) == _as_httpx(url)


def test_plain_urls_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_httpx(url: str) -> httpx.URL:
        raise AssertionError(f"parsed by httpx: {url}")

    monkeypatch.setattr(fetch_module.httpx, "URL", no_httpx)
    for url in PLAIN_URLS:
        assert _parse_url(url).text == url


def test_random_urls_are_read_as_httpx_reads_them() -> None:
    rng = random.Random(1234)
    hosts = ["a.b", "replicate.delivery", "1.2.3.4", "255.0.0.9", "300.1.1.1", "1.2.3", "A.b"]
    hosts += ["x-y", "1e3.5.5.5", "0.0.0.0", "[::1]", "a..b", "-a.b-", "a_b.c", "a.b.", ""]
    ports = ["", ":1", ":80", ":443", ":8080", ":65535", ":65536", ":0", ":099", ":x", ":"]
    alphabet = "aZ09-._~!$&'()*+,;=:@/?#%[]{}\\ \"<>`|^äé\t"
    checked = fast = 0
    for _ in range(20_000):
        chars = alphabet if rng.random() < 0.5 else alphabet[:23]  # [:23]: no "%", "#" ...
        tail = "".join(rng.choice(chars) for _ in range(rng.randrange(0, 12)))
        slash = "/" if rng.random() < 0.85 else ""
        scheme = rng.choice(["https", "http", "HTTP", "ftp"])
        url = f"{scheme}://{rng.choice(hosts)}{rng.choice(ports)}{slash}{tail}"
        assert _as_fetcher(url) == _as_httpx(url), url
        checked += 1
        fast += _PLAIN_URL.fullmatch(url) is not None
    assert checked == 20_000
    assert fast > 1000, "the comparison covers the fast path"
