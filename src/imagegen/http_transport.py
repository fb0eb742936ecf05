"""Pieces of imagegen's httpx clients: one that keeps no cookies, one transport built late.

Provider APIs and image hosts are called through ``imagegen.upstream``; httpx's own client
serves webhooks, and provider calls where ``IMAGEGEN_PROVIDER_HTTP_TRANSPORT=httpx``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx


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
