"""Sending one webhook attempt: signed, to a checked address, no redirects, bounded in time.

The sender has its own ``httpx.AsyncClient`` (injected; never the provider's or the download
client), so no credential of another upstream can ride along. The connection is pinned to the
address the policy checked (the ``Host`` header and TLS SNI keep the name), so a second DNS
answer cannot swap in a private address. A redirect is a failed attempt, reported with its
status: following it would let a public receiver bounce imagegen to a private one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from imagegen import __version__
from imagegen.jobs.records import Delivery
from imagegen.jobs.webhooks.address import AddressPolicy, AddressRefused
from imagegen.jobs.webhooks.signing import signed_headers


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt came to; ``permanent`` failures are not retried."""

    status_code: int | None
    error: str | None
    delivered: bool
    permanent: bool = False


class WebhookSender:
    """Posts deliveries. ``key`` is the decoded secret (``signing.decode_secret``); without one
    every attempt fails for good, as unsigned messages would be worthless to a receiver."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        key: bytes | None,
        policy: AddressPolicy,
        timeout: float,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._key = key
        self._policy = policy
        self._timeout = timeout
        self._now = now

    async def send(self, delivery: Delivery) -> AttemptResult:
        if self._key is None:
            return AttemptResult(None, "IMAGEGEN_WEBHOOK_SECRET is not set", False, True)
        try:
            request = await self._request(delivery, self._key)
        except AddressRefused as exc:
            return AttemptResult(None, str(exc), False, True)
        except httpx.InvalidURL:
            return AttemptResult(None, "not a valid URL", False, True)
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._http.send(request, stream=True, follow_redirects=False)
                await response.aclose()  # the receiver's body is of no interest
        except TimeoutError:
            return AttemptResult(None, f"no response within {self._timeout:g}s", False)
        except httpx.HTTPError as exc:
            return AttemptResult(None, f"{type(exc).__name__}: could not deliver", False)
        return _outcome(response)

    async def _request(self, delivery: Delivery, key: bytes) -> httpx.Request:
        url = httpx.URL(delivery.url)
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await self._policy.address_for(host, port)
        body = delivery.body.encode()
        headers = signed_headers(key, delivery.id, int(self._now()), body)
        headers["user-agent"] = f"imagegen-webhooks/{__version__}"
        request = self._http.build_request("POST", url, content=body, headers=headers)
        request.url = url.copy_with(host=address)
        request.extensions = {**request.extensions, "sni_hostname": host}
        return request


def _outcome(response: httpx.Response) -> AttemptResult:
    status = response.status_code
    if 200 <= status < 300:
        return AttemptResult(status, None, True)
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        where = f" to {location[:200]}" if location else ""
        return AttemptResult(status, f"redirect{where} not followed", False)
    if status == 410:  # the receiver says the endpoint is gone for good
        return AttemptResult(status, "HTTP 410 Gone: the receiver asked not to retry", False, True)
    return AttemptResult(status, f"HTTP {status}", False)
