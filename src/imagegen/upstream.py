"""The seam between imagegen and the HTTP upstreams it calls (provider APIs, image hosts).

imagegen sends few kinds of upstream request: a small request whose reply is read in full
under a size cap (a Replicate create, a poll, an OpenAI-compatible generation), and a GET whose
reply is streamed (an output download). ``Upstream`` is those two calls and nothing more:
method, URL, headers, body and timeout in; status, headers and body out.

- ``AiohttpUpstream``: aiohttp's pool, called directly: no per-request machinery beyond
  aiohttp's own (httpx's client costs twice aiohttp's CPU per request even over aiohttp's pool;
  BENCHMARKS.md, ``clients``). What production uses.
- ``HttpxUpstream``: any ``httpx.AsyncClient``: httpx's own pool
  (``IMAGEGEN_PROVIDER_HTTP_TRANSPORT=httpx``), or a test's ``httpx.MockTransport``.

Both send exactly the headers given (no client defaults, no auth, no cookies kept or sent),
follow no redirect, and fail with httpx's exception types by what a failure means for a retry:
``ConnectError`` or ``ConnectTimeout`` only when no connection was made, i.e. nothing was sent
(a create is retried only then); a connection dropped or reset once made is a ``ReadError``.
A reply read in full comes back as a ``Reply`` (its body decoded; an ``httpx.Response`` is
one); a streamed one as a ``StreamedReply`` of raw bytes. ``sni_hostname`` is the safe
fetcher's pinning: the URL names the checked address, the TLS handshake (SNI and the
certificate's name) and the ``Host`` header the caller gives keep the host's name.
aiohttp is imported on the first request, not at start-up (~90 ms).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import httpx

if TYPE_CHECKING:
    import aiohttp

TimeoutKey = tuple[float | None, float | None, float | None]
# A body read in full is handed on decoded: headers that describe the wire encoding no longer hold.
BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
_CHARSET = re.compile(r";\s*charset=\"?([\w.:-]+)", re.IGNORECASE)


class BodyTooLarge(Exception):
    """A reply declared or sent more than the ``max_bytes`` its caller allows; the rest of it
    was not read (the connection is closed)."""


class Reply(Protocol):
    """A reply read in full, its body decoded (``httpx.Response`` is one)."""

    @property
    def status_code(self) -> int: ...

    @property
    def reason_phrase(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...  # names looked up case-insensitively

    @property
    def content(self) -> bytes: ...

    @property
    def text(self) -> str: ...  # decoded by the charset of Content-Type, else UTF-8

    @property
    def is_success(self) -> bool: ...

    def json(self) -> Any: ...  # ValueError when the body is not JSON


class StreamedReply(Protocol):
    """A reply whose body is still on the wire: its status and headers, its raw bytes."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...  # names looked up case-insensitively

    def aiter_raw(self) -> AsyncIterator[bytes]: ...


class Upstream(Protocol):
    """Sends requests upstream; see the module docstring for what every implementation keeps."""

    @property
    def timeout(self) -> httpx.Timeout:
        """The timeouts of a request given none."""
        ...

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        timeouts: httpx.Timeout | None = None,
        max_bytes: int,
    ) -> Reply:
        """The reply, its body read in full and decoded; ``BodyTooLarge`` past ``max_bytes``."""
        ...

    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeouts: httpx.Timeout | None = None,
        sni_hostname: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[StreamedReply]:
        """The reply as it arrives, undecoded; leaving the block closes it."""
        ...

    async def aclose(self) -> None: ...


def upstream_of(http: Upstream | httpx.AsyncClient) -> Upstream:
    """``http`` itself, or an ``httpx.AsyncClient`` (tests' ``MockTransport``) as an upstream."""
    return HttpxUpstream(http) if isinstance(http, httpx.AsyncClient) else http


class AiohttpUpstream:
    """HTTP/1.1 over one aiohttp pool of ``limits.max_connections`` connections, opened on
    the first request. ``timeout``'s connect, read and pool become aiohttp's ``sock_connect``,
    ``sock_read`` and ``connect`` (which includes the wait for a pooled connection)."""

    def __init__(self, *, timeout: httpx.Timeout, limits: httpx.Limits) -> None:
        self._default = timeout
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[TimeoutKey, Any] = {}

    @property
    def timeout(self) -> httpx.Timeout:
        return self._default

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        timeouts: httpx.Timeout | None = None,
        max_bytes: int,
    ) -> Reply:
        import aiohttp

        session = self._session or self._open()
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=content,
                allow_redirects=False,
                compress=False,
                timeout=self._aiohttp_timeout(timeouts or self._default),
            ) as response:
                declared = response.content_length
                if declared is not None and declared > max_bytes:
                    raise BodyTooLarge
                body = await _read_capped(response.content, max_bytes)
                return _ReadReply(response.status, response.reason or "", response.headers, body)
        except aiohttp.ClientError as exc:
            raise httpx_error(exc) from exc

    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeouts: httpx.Timeout | None = None,
        sni_hostname: str | None = None,
    ) -> _AiohttpStream:
        return _AiohttpStream(self, method, url, headers, timeouts, sni_hostname)

    async def _request_streamed(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        timeouts: httpx.Timeout | None,
        sni_hostname: str | None,
    ) -> aiohttp.ClientResponse:
        import aiohttp

        session = self._session or self._open()
        try:
            return await session.request(
                method,
                url,
                headers=headers,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=self._aiohttp_timeout(timeouts or self._default),
                server_hostname=sni_hostname,
            )
        except aiohttp.ClientError as exc:
            raise httpx_error(exc) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(
            keepalive_timeout=self._limits.keepalive_expiry,
            ssl=httpx.create_ssl_context(trust_env=False),
            limit=self._limits.max_connections or 0,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
        )
        return self._session

    def _aiohttp_timeout(self, timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
        key = (timeout.connect, timeout.read, timeout.pool)
        made = self._timeouts.get(key)
        if made is None:
            made = aiohttp_timeout(key)
            if len(self._timeouts) < 64:  # a handful of distinct sets in practice
                self._timeouts[key] = made
        return made


class _ReadReply:
    """An aiohttp reply read in full. Its headers are aiohttp's, as received: those of the wire
    encoding (``Content-Encoding``, ``Content-Length``) describe what was sent, not ``content``."""

    __slots__ = ("content", "headers", "reason_phrase", "status_code")

    def __init__(
        self, status: int, reason: str, headers: Mapping[str, str], content: bytes
    ) -> None:
        self.status_code = status
        self.reason_phrase = reason
        self.headers = headers
        self.content = content

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        found = _CHARSET.search(self.headers.get("content-type", ""))
        try:
            return self.content.decode(found[1] if found else "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _AiohttpStream:
    """``AiohttpUpstream.stream``: the request sent on entry, the reply released on exit (as an
    ``asynccontextmanager`` would, without its generator: one per download)."""

    __slots__ = ("_args", "_response", "_upstream")

    def __init__(
        self,
        upstream: AiohttpUpstream,
        method: str,
        url: str,
        headers: Mapping[str, str],
        timeouts: httpx.Timeout | None,
        sni_hostname: str | None,
    ) -> None:
        self._upstream = upstream
        self._args = (method, url, headers, timeouts, sni_hostname)
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> StreamedReply:
        self._response = await self._upstream._request_streamed(*self._args)
        return _AiohttpReply(self._response)

    async def __aexit__(self, *exc_info: object) -> None:
        import aiohttp

        response, self._response = self._response, None
        if response is None:
            return
        try:
            await response.__aexit__(None, None, None)
        except aiohttp.ClientError as exc:
            raise httpx_error(exc) from exc


class _AiohttpReply:
    """An aiohttp reply as a ``StreamedReply``."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers: Mapping[str, str] = response.headers

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        import aiohttp

        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except aiohttp.ClientError as exc:
            raise httpx_error(exc) from exc


async def _read_capped(content: aiohttp.StreamReader, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class HttpxUpstream:
    """An ``httpx.AsyncClient`` as an upstream. Its own headers, auth and cookies are never
    sent: each request is built from what it is given alone."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @property
    def timeout(self) -> httpx.Timeout:
        return self._client.timeout

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        timeouts: httpx.Timeout | None = None,
        max_bytes: int,
    ) -> Reply:
        request = self._request(method, url, headers, content, timeouts, None)
        response = await self._client.send(request, stream=True, auth=None, follow_redirects=False)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise BodyTooLarge
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge
                chunks.append(chunk)
        finally:
            await response.aclose()
        kept = [(k, v) for k, v in response.headers.multi_items() if k not in BODY_HEADERS]
        return httpx.Response(
            response.status_code,
            headers=kept,
            content=b"".join(chunks),
            request=request,
            extensions=response.extensions,
        )

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        timeouts: httpx.Timeout | None = None,
        sni_hostname: str | None = None,
    ) -> AsyncIterator[StreamedReply]:
        request = self._request(method, url, headers, None, timeouts, sni_hostname)
        response = await self._client.send(request, stream=True, auth=None, follow_redirects=False)
        try:
            yield _HttpxReply(response)
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        timeout: httpx.Timeout | None,
        sni_hostname: str | None,
    ) -> httpx.Request:
        extensions: dict[str, Any] = {"timeout": (timeout or self._client.timeout).as_dict()}
        if sni_hostname is not None:
            extensions["sni_hostname"] = sni_hostname
        return httpx.Request(method, url, headers=headers, content=content, extensions=extensions)


class _HttpxReply:
    """An ``httpx.Response`` as a ``StreamedReply`` (one built with its body already read, as
    a ``MockTransport`` may return, gives that body)."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status_code = response.status_code
        self.headers: Mapping[str, str] = response.headers

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        if self._response.is_stream_consumed:
            yield self._response.content
            return
        async for chunk in self._response.aiter_raw():
            yield chunk


def aiohttp_timeout(key: TimeoutKey) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for httpx's (connect, read, pool)."""
    import aiohttp

    connect, read, pool = key
    return aiohttp.ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)


def httpx_error(exc: aiohttp.ClientError) -> httpx.TransportError:
    """aiohttp's error as httpx's, by what it means for a retry (see the module docstring)."""
    import aiohttp

    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # no connection in time, pool included
        kind = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS: nothing was sent
        kind = httpx.ConnectError
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        kind = httpx.ReadError  # disconnected, reset, cut short: the request may have been sent
    elif isinstance(exc, aiohttp.ClientResponseError):
        kind = httpx.RemoteProtocolError  # a reply aiohttp could not parse
    else:
        kind = httpx.TransportError
    return kind(str(exc) or type(exc).__name__)
