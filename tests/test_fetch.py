"""SafeFetcher: allow-list, address checks, redirects, size and time limits, streaming."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from tests.support.addresses import PRIVATE_ADDRESSES

from imagegen.errors import ImageFetchError
from imagegen.fetch import SafeFetcher
from imagegen.netpolicy import Resolver

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


def make_fetcher(
    handler: Handler,
    *,
    allowed: Sequence[str] = (),
    dns: dict[str, Sequence[str]] | None = None,
    max_bytes: int = 1024 * 1024,
    timeout: float = 5.0,
    resolver_calls: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> SafeFetcher:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler), headers=headers)
    return SafeFetcher(
        client,
        allowed_hosts=allowed,
        max_bytes=max_bytes,
        timeout=timeout,
        resolver=fake_resolver(DEFAULT_DNS if dns is None else dns, resolver_calls),
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


async def test_server_error_status(tmp_path: Path) -> None:
    fetcher = make_fetcher(lambda request: httpx.Response(503))
    error = await fetch_error(fetcher, "https://replicate.delivery/a.png", tmp_path)
    assert "HTTP 503" in error.message


async def test_connection_error(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    error = await fetch_error(make_fetcher(refuse), "https://replicate.delivery/a.png", tmp_path)
    assert "connection error" in error.message
    assert isinstance(error.__cause__, httpx.ConnectError)


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


async def test_body_over_the_cap_is_aborted_while_streaming(tmp_path: Path) -> None:
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            pulled.append(1)
            yield b"x" * 256

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


async def test_memory_stays_flat_for_a_large_body(tmp_path: Path) -> None:
    size, chunk = 20 * 1024 * 1024, 64 * 1024

    async def body() -> AsyncIterator[bytes]:
        for i in range(size // chunk):
            yield bytes([i % 256]) * chunk

    fetcher = make_fetcher(lambda r: httpx.Response(200, content=body()), max_bytes=size)
    tracemalloc.start()
    try:
        fetched = await fetcher.fetch("https://replicate.delivery/big.png", tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fetched.size_bytes == size
    assert fetched.path.stat().st_size == size
    assert peak < size / 10, f"peak {peak} bytes for a {size} byte body"


# --- a real server on loopback ----------------------------------------------------------


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


async def test_streams_from_a_real_loopback_server(tmp_path: Path) -> None:
    parts = [bytes([i]) * 100_000 for i in range(30)]
    server, port = await serve_chunked(parts)
    async with server, httpx.AsyncClient() as client:
        fetcher = SafeFetcher(client, allowed_hosts=["127.0.0.1"], max_bytes=10_000_000, timeout=10)
        fetched = await fetcher.fetch(f"http://127.0.0.1:{port}/out.png", tmp_path)
    body = b"".join(parts)
    assert fetched.size_bytes == len(body)
    assert fetched.sha256 == hashlib.sha256(body).hexdigest()
    assert fetched.path.read_bytes() == body


async def test_real_server_without_length_is_cut_at_the_cap(tmp_path: Path) -> None:
    def endless() -> Iterator[bytes]:
        while True:
            yield b"z" * 65536

    server, port = await serve_chunked(endless())
    async with server, httpx.AsyncClient() as client:
        fetcher = SafeFetcher(client, allowed_hosts=["127.0.0.1"], max_bytes=1_000_000, timeout=10)
        error = await fetch_error(fetcher, f"http://127.0.0.1:{port}/big", tmp_path)
    assert "larger than 1000000 bytes" in error.message


async def test_loopback_is_refused_unless_configured(tmp_path: Path) -> None:
    server, port = await serve_chunked([b"secret"])
    async with server, httpx.AsyncClient() as client:
        fetcher = SafeFetcher(
            client,
            allowed_hosts=[".internal.test"],
            max_bytes=1000,
            timeout=5,
            resolver=fake_resolver({"admin.internal.test": ["127.0.0.1"]}),
        )
        error = await fetch_error(fetcher, f"http://admin.internal.test:{port}/", tmp_path)
    assert "private or reserved address 127.0.0.1" in error.message
