"""imagegen's upstreams (aiohttp's pool, httpx's client) over real sockets: replies read whole
or streamed, the size cap, pinning, no cookies, and failures as httpx's errors by what they mean
for a retry (``ConnectError``/``ConnectTimeout`` only when nothing was sent)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from imagegen.config import Settings
from imagegen.services import blocking_http_client, download_http_client, provider_http_client
from imagegen.upstream import AiohttpUpstream, BodyTooLarge, HttpxUpstream, Upstream

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


TIMEOUT = httpx.Timeout(2.0, read=0.2)
KINDS = ["aiohttp", "httpx"]


def _upstream(kind: str, max_connections: int = 10) -> Upstream:
    limits = httpx.Limits(max_connections=max_connections)
    if kind == "aiohttp":
        return AiohttpUpstream(timeout=TIMEOUT, limits=limits)
    return HttpxUpstream(httpx.AsyncClient(timeout=TIMEOUT, limits=limits))


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_replies_are_read_whole_or_streamed(kind: str) -> None:
    async with serving(answer) as base:
        upstream = _upstream(kind)
        for _ in range(3):  # one pooled connection, reused
            response = await upstream.send(
                "POST",
                base + "/v1/predictions",
                headers={"Content-Type": "application/json"},
                content=b'{"input": {}}',
                max_bytes=1000,
            )
            assert response.status_code == 201
            assert response.reason_phrase == "Created"
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {"id": "p1", "status": "succeeded"}
        async with upstream.stream("GET", base + "/v1/predictions/p1", headers={}) as streamed:
            assert streamed.status_code == 201
            assert streamed.headers["Content-Type"] == "application/json"
            assert b"".join([chunk async for chunk in streamed.aiter_raw()]) == REPLY
        await upstream.aclose()


async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(8):
        writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("handler", [answer, chunked], ids=["content-length", "chunked"])
async def test_a_reply_past_the_cap_is_refused(kind: str, handler: Handler) -> None:
    async with serving(handler) as base:
        upstream = _upstream(kind)
        with pytest.raises(BodyTooLarge):
            await upstream.send("GET", base + "/", headers={}, max_bytes=10)
        await upstream.aclose()


@pytest.mark.parametrize("kind", KINDS)
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
    kind: str, handler: Handler, error: type[httpx.TransportError]
) -> None:
    async with serving(handler) as base:
        upstream = _upstream(kind)
        with pytest.raises(httpx.TransportError) as caught:
            await upstream.send("POST", base + "/", headers={}, content=b"{}", max_bytes=10_000)
        await upstream.aclose()
    assert isinstance(caught.value, error), repr(caught.value)
    assert not isinstance(caught.value, httpx.ConnectError | httpx.ConnectTimeout)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failure_mid_stream_is_a_read_error(kind: str) -> None:
    async with serving(reset_mid_body) as base:
        upstream = _upstream(kind)

        async def read_all() -> None:
            async with upstream.stream("GET", base + "/", headers={}) as streamed:
                assert streamed.status_code == 200
                async for _ in streamed.aiter_raw():
                    pass

        with pytest.raises(httpx.ReadError):
            await read_all()
        await upstream.aclose()


async def half_a_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    await writer.drain()
    await reader.read()  # the rest never comes; the client must close


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_left_early_gives_its_connection_back(kind: str) -> None:
    async with serving(half_a_body) as base:
        upstream = _upstream(kind, max_connections=1)  # a reply kept would block the next

        async def abandon() -> None:
            async with upstream.stream("GET", base + "/", headers={}) as streamed:
                assert streamed.status_code == 200
                raise LookupError("the caller gives up before the body")

        for _ in range(3):
            with pytest.raises(LookupError):
                await asyncio.wait_for(abandon(), 5)
        await upstream.aclose()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_refused_connection_is_a_connect_error(kind: str) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    upstream = _upstream(kind, max_connections=1)
    with pytest.raises(httpx.ConnectError):
        await upstream.send("POST", f"http://127.0.0.1:{port}/", headers={}, max_bytes=10)
    with pytest.raises(httpx.ConnectError):
        async with upstream.stream("GET", f"http://127.0.0.1:{port}/", headers={}):
            pass
    await upstream.aclose()


@pytest.mark.parametrize(
    ("setting", "kind"), [("aiohttp", AiohttpUpstream), ("httpx", HttpxUpstream)]
)
async def test_the_upstreams_kind_is_a_setting(
    setting: str, kind: type[Upstream], tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, provider_http_transport=setting)
    made = [provider_http_client(settings), blocking_http_client(settings)]
    made.append(download_http_client(settings))  # the same kind, in a pool of its own
    for upstream in made:
        assert isinstance(upstream, kind)
        await upstream.aclose()
    assert made[0].timeout.read == settings.replicate_wait + 30.0
    assert made[1].timeout.read == settings.request_timeout + 5.0
    assert made[2].timeout.read == settings.download_timeout


@pytest.mark.parametrize("kind", KINDS)
async def test_a_pinned_download_keeps_the_host_name(kind: str) -> None:
    """The safe fetcher's pinning: the checked address in the URL, the name in ``Host``."""
    heads: list[bytes] = []

    async def first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\npng")
        await writer.drain()
        writer.close()

    async with serving(first) as base:
        port = base.rsplit(":", 1)[1]
        upstream = _upstream(kind)
        headers = {"Accept-Encoding": "identity", "Host": f"images.example:{port}"}
        async with upstream.stream(
            "GET", base + "/a.png", headers=headers, sni_hostname="images.example"
        ) as streamed:
            assert b"".join([chunk async for chunk in streamed.aiter_raw()]) == b"png"
        await upstream.aclose()
    head = heads[0].lower()
    assert f"host: images.example:{port}\r\n".encode() in head
    assert b"accept-encoding: identity\r\n" in head


@pytest.mark.parametrize("setting", KINDS)
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

    settings = Settings(data_dir=tmp_path, provider_http_transport=setting)
    async with serving(cookie_setter) as base:
        for upstream in (provider_http_client(settings), download_http_client(settings)):
            for _ in range(2):
                reply = await upstream.send("GET", base + "/", headers={}, max_bytes=100)
                assert reply.status_code == 200
                async with upstream.stream("GET", base + "/", headers={}) as streamed:
                    assert streamed.status_code == 200
            await upstream.aclose()
    assert len(heads) == 8
    assert all(b"cookie:" not in head.lower() for head in heads)


async def test_an_httpx_clients_own_headers_are_never_sent() -> None:
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    async with serving(record) as base:
        client = httpx.AsyncClient(headers={"Authorization": "Bearer r8_secret"}, auth=("u", "p"))
        upstream = HttpxUpstream(client)
        async with upstream.stream("GET", base + "/", headers={"Accept": "*/*"}) as streamed:
            assert streamed.status_code == 200
        await upstream.aclose()
    assert b"authorization" not in heads[0].lower()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_replys_text_follows_its_charset(kind: str) -> None:
    async def latin1(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=latin-1\r\n"
            b"Content-Length: 4\r\n\r\ncaf\xe9"
        )
        await writer.drain()
        writer.close()

    async with serving(latin1) as base:
        upstream = _upstream(kind)
        reply = await upstream.send("GET", base + "/", headers={}, max_bytes=100)
        await upstream.aclose()
    assert (reply.status_code, reply.reason_phrase) == (503, "Service Unavailable")
    assert not reply.is_success
    assert reply.text == "café"
    with pytest.raises(ValueError):
        reply.json()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_post_without_a_body_says_so(kind: str) -> None:
    """A cancel is a POST with no body: ``Content-Length: 0``, as Replicate expects."""
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    async with serving(record) as base:
        upstream = _upstream(kind)
        headers = {"Authorization": "Bearer r8_x", "User-Agent": "imagegen/test"}
        reply = await upstream.send("POST", base + "/cancel", headers=headers, max_bytes=10)
        await upstream.aclose()
    assert reply.json() == {}
    head = heads[0].lower()
    assert head.startswith(b"post /cancel http/1.1\r\n")
    assert b"content-length: 0\r\n" in head
    assert b"authorization: bearer r8_x\r\n" in head
    assert b"user-agent: imagegen/test\r\n" in head
