"""The provider clients' aiohttp transport: httpx's API, and aiohttp's errors as httpx's by what
they mean for a retry (``ConnectError``/``ConnectTimeout`` only when nothing was sent)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from imagegen.config import Settings
from imagegen.http_transport import AiohttpTransport
from imagegen.services import blocking_http_client, download_http_client, provider_http_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
REPLY = b'{"id": "p1", "status": "succeeded"}'


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            await _read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        writer.write(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(REPLY)}\r\n\r\n".encode()
            + REPLY
        )
        await writer.drain()


async def reset_after_the_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await _read_request(reader)
    _reset(writer)


async def reset_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    await writer.drain()
    _reset(writer)


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"this is not HTTP\r\n\r\n")
    await writer.drain()
    writer.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    await reader.read()  # until the client gives up and closes


async def _client(handler: Handler) -> AsyncIterator[httpx.AsyncClient]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limits = httpx.Limits(max_connections=10)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        transport=AiohttpTransport(limits=limits),
        timeout=httpx.Timeout(2.0, read=0.2),
    ) as client:
        yield client
    server.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for made in _client(answer):
        yield made


async def test_requests_and_replies_keep_httpx_api(client: httpx.AsyncClient) -> None:
    for _ in range(3):  # one pooled connection, reused
        response = await client.post("/v1/predictions", json={"input": {"prompt": "x"}})
        assert response.status_code == 201
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"id": "p1", "status": "succeeded"}
    async with client.stream("GET", "/v1/predictions/p1") as streamed:
        assert b"".join([chunk async for chunk in streamed.aiter_bytes()]) == REPLY


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (reset_after_the_request, httpx.ReadError),
        (reset_mid_body, httpx.ReadError),
        (garbage, httpx.RemoteProtocolError),
        (silent, httpx.ReadTimeout),
    ],
    ids=["reset-after-request", "reset-mid-body", "not-http", "no-reply"],
)
async def test_a_failure_after_sending_is_never_a_connect_error(
    handler: Handler, error: type[httpx.TransportError]
) -> None:
    async for client in _client(handler):
        with pytest.raises(httpx.TransportError) as caught:
            await client.post("/v1/predictions", json={"input": {}})
        assert isinstance(caught.value, error), repr(caught.value)
        assert not isinstance(caught.value, httpx.ConnectError | httpx.ConnectTimeout)


async def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    transport = AiohttpTransport(limits=httpx.Limits(max_connections=1))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


@pytest.mark.parametrize(
    ("setting", "transport"),
    [("aiohttp", AiohttpTransport), ("httpx", httpx.AsyncHTTPTransport)],
)
async def test_the_provider_clients_transport_is_a_setting(
    setting: str, transport: type[httpx.AsyncBaseTransport], tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, provider_http_transport=setting)
    for client in (provider_http_client(settings), blocking_http_client(settings)):
        assert isinstance(client._transport, transport)
        await client.aclose()
    downloads = download_http_client(settings)  # the same kind, in a pool of its own
    assert isinstance(downloads._transport, transport)
    await downloads.aclose()


async def test_a_pinned_download_keeps_the_host_name_over_aiohttp() -> None:
    """The safe fetcher's pinning: the checked address in the URL, the name in ``Host``."""
    heads: list[bytes] = []

    async def first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\npng")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(first, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = AiohttpTransport(limits=httpx.Limits(max_connections=1))
    async with httpx.AsyncClient(transport=transport) as client:
        request = client.build_request(
            "GET", f"http://images.example:{port}/a.png", headers={"Accept-Encoding": "identity"}
        )
        request.url = request.url.copy_with(host="127.0.0.1")
        request.extensions = {**request.extensions, "sni_hostname": "images.example"}
        response = await client.send(request)
    server.close()
    assert response.content == b"png"
    head = heads[0].lower()
    assert f"host: images.example:{port}\r\n".encode() in head
    assert b"accept-encoding: identity\r\n" in head


@pytest.mark.parametrize("setting", ["aiohttp", "httpx"])
async def test_a_cookie_a_reply_sets_is_never_sent_back(setting: str, tmp_path: Path) -> None:
    heads: list[bytes] = []

    async def cookie_setter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                heads.append(await _read_request(reader))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; Path=/\r\nContent-Length: 2\r\n\r\n{}"
            )
            await writer.drain()

    server = await asyncio.start_server(cookie_setter, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = Settings(data_dir=tmp_path, provider_http_transport=setting)
    for client in (provider_http_client(settings), download_http_client(settings)):
        async with client:
            for _ in range(2):
                assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
            assert not client.cookies
    server.close()
    assert len(heads) == 4
    assert all(b"cookie:" not in head.lower() for head in heads)
