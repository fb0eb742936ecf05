"""The provider clients' transport: httpx's API over aiohttp's connection pool (``httpx-aiohttp``).

httpx's own pool costs several times aiohttp's CPU per request, more as concurrency grows
(encode/httpx#3215; BENCHMARKS.md, ``clients``). Providers keep the httpx API, and their tests
their ``httpx.MockTransport``: only the transport under the provider and download clients
changes, chosen by ``IMAGEGEN_PROVIDER_HTTP_TRANSPORT`` (``httpx`` falls back to httpx's own).
The safe fetcher's pinning survives it: httpx-aiohttp passes the ``sni_hostname`` extension to
aiohttp as ``server_hostname`` (SNI and the certificate's name), and aiohttp keeps the ``Host``
header it is given.

aiohttp's errors become httpx's by type, by what they mean for a retry: the Replicate client
retries a create (a paid prediction) only after ``ConnectError`` or ``ConnectTimeout``, i.e. when
nothing was sent. So those two mean exactly that no connection was made; a connection that
dropped or reset once made is a ``ReadError``, whatever aiohttp calls it. (httpx-aiohttp's own
mapping makes any ``ClientConnectionError``, a server disconnecting mid-reply included, a
``ConnectTimeout``.) aiohttp is imported on the first request, not at start-up (~90 ms).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    import aiohttp


class AiohttpTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over one ``aiohttp`` pool of ``limits.max_connections`` connections."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        self._limits = limits
        self._inner: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._inner is None:
            from httpx_aiohttp import AiohttpTransport as Inner

            self._inner = Inner(limits=self._limits, trust_env=False)
        with _translated():
            response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TranslatedStream(response.stream)
        return response

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()


class _TranslatedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _translated():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        with _translated():
            await self._stream.aclose()


@contextmanager
def _translated() -> Iterator[None]:
    import aiohttp

    try:
        yield
    except httpx.TransportError as exc:  # httpx-aiohttp's mapping: redo it from the cause
        if not isinstance(exc.__cause__, aiohttp.ClientError):
            raise
        raise _httpx_error(exc.__cause__) from exc.__cause__
    except aiohttp.ClientError as exc:  # what httpx-aiohttp leaves unmapped
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
