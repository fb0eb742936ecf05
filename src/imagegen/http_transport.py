"""The provider clients' transport: httpx's API over aiohttp's connection pool.

httpx's own pool costs several times aiohttp's CPU per request, more as concurrency grows
(encode/httpx#3215; BENCHMARKS.md, ``clients``). Providers keep the httpx API, and their tests
their ``httpx.MockTransport``: only the transport under the provider and download clients
changes, chosen by ``IMAGEGEN_PROVIDER_HTTP_TRANSPORT`` (``httpx`` falls back to httpx's own).
The safe fetcher's pinning survives it: the ``sni_hostname`` extension goes to aiohttp as
``server_hostname`` (SNI and the certificate's name), and aiohttp keeps the ``Host`` header it
is given.

The translation is one step, per request: the request's headers go over as they are (no
merging), its timeouts as an aiohttp ``ClientTimeout`` built once per distinct set, the reply
comes back as an ``httpx.Response`` over aiohttp's stream. No cookie is kept at either layer
(``CookielessClient``, aiohttp's ``DummyCookieJar``): what one reply sets never rides on the
next request.

aiohttp's errors become httpx's by type, by what they mean for a retry: the Replicate client
retries a create (a paid prediction) only after ``ConnectError`` or ``ConnectTimeout``, i.e. when
nothing was sent. So those two mean exactly that no connection was made; a connection that
dropped or reset once made is a ``ReadError``, whatever aiohttp calls it. aiohttp is imported on
the first request, not at start-up (~90 ms).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import aiohttp

_CHUNK = 16 * 1024
_HTTP_11 = b"HTTP/1.1"


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing a reply sets."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that neither stores nor sends cookies: provider APIs and image
    hosts need none, and reading ``Set-Cookie`` off every reply costs CPU per request."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("this client keeps no cookies")


_NO_COOKIES = _NoCookies()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over one ``aiohttp`` pool of ``limits.max_connections`` connections."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, float | None, float | None], Any] = {}

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

    def _timeout(self, extensions: dict[str, Any]) -> aiohttp.ClientTimeout:
        given = extensions.get("timeout", {})
        key = (given.get("connect"), given.get("read"), given.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            import aiohttp

            connect, read, pool = key
            timeout = aiohttp.ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)
            if len(self._timeouts) < 64:  # a handful of distinct sets in practice
                self._timeouts[key] = timeout
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import aiohttp

        session = self._session or self._open()
        headers = request.headers.multi_items()
        data: Any
        try:
            data = request.content or None
        except httpx.RequestNotRead:  # a streamed body: aiohttp frames it itself
            data = request.stream
            headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
        try:
            response = await session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=self._timeout(request.extensions),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc) from exc
        extensions: dict[str, Any] = {"http_version": _HTTP_11}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseStream(response),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        import aiohttp

        content = self._response.content
        try:
            while chunk := await content.read(_CHUNK):
                yield chunk
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc) from exc

    async def aclose(self) -> None:
        import aiohttp

        try:
            await self._response.__aexit__(None, None, None)
        except aiohttp.ClientError as exc:
            raise _httpx_error(exc) from exc


def _httpx_error(exc: aiohttp.ClientError) -> httpx.TransportError:
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


class DeferredTransport(httpx.AsyncBaseTransport):
    """The transport ``make()`` builds, built on the first request: httpx's own transport
    imports httpcore and loads the CA certificates into a TLS context (some 50 ms and a few
    MB), which a client that may never send anything (webhooks) need not pay at start-up."""

    def __init__(self, make: Callable[[], httpx.AsyncBaseTransport]) -> None:
        self._make = make
        self._inner: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._inner is None:
            self._inner = self._make()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()
