"""The HTTP client the command line uses: imagegen's API with an optional Bearer key, errors
as the API states them, and a generation's server-sent events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

EXIT_FAILED = 1
EXIT_REFUSED = 2  # the server refused the request (4xx): fix the command, not the server


class ClientError(Exception):
    """The request failed; ``exit_code`` is what the command exits with."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event: ``state``, ``progress`` or ``done``, with its JSON data."""

    kind: str
    data: dict[str, Any]


def error_message(response: httpx.Response) -> str:
    """``HTTP 400: width: must be ...``: the status and the API's own message."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    text = error if isinstance(error, str) else response.text.strip()[:300]
    return f"HTTP {response.status_code}: {text or response.reason_phrase}"


def check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        code = EXIT_REFUSED if response.status_code < 500 else EXIT_FAILED
        raise ClientError(error_message(response), exit_code=code)
    return response


class ApiClient:
    """A running imagegen at ``base_url``. ``timeout`` bounds each read (events included)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Timeout(timeout, connect=5)
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=limits, transport=transport
        )
        self._elsewhere = httpx.Client(timeout=limits, transport=transport)  # never the key

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._elsewhere.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return check(self._http.request(method, path, **kwargs))
        except httpx.HTTPError as exc:
            raise ClientError(f"could not reach {self.base_url}: {exc}") from exc

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, **kwargs)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise ClientError(f"{self.base_url}{path} sent an unexpected reply")
        return payload

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """An async generation (``Prefer: respond-async``): the job, queued."""
        return self.json(
            "POST", "/api/v1/images/generate", json=body, headers={"Prefer": "respond-async"}
        )

    def generation(self, generation_id: str) -> dict[str, Any]:
        return self.json("GET", f"/api/v1/generations/{generation_id}")

    def cancel(self, generation_id: str) -> dict[str, Any]:
        return self.json("POST", f"/api/v1/generations/{generation_id}/cancel")

    def history(self, *, limit: int, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return self.json("GET", "/api/v1/generations", params=params)

    def download(self, url: str) -> bytes:
        """An image's bytes; the key goes only to this imagegen, never to a provider's URL."""
        if url.startswith(self.base_url + "/"):
            return self.request("GET", url).content
        try:
            return check(self._elsewhere.get(url)).content
        except httpx.HTTPError as exc:
            raise ClientError(f"could not download {url}: {exc}") from exc

    def events(self, generation_id: str) -> Iterator[Event]:
        """The job's events until ``done`` (or until the server closes the stream).

        Raises ``ClientError`` for a refused request and ``httpx.TransportError`` when the
        connection drops, so that the caller may reconnect.
        """
        path = f"/api/v1/generations/{generation_id}/events"
        with self._http.stream("GET", path, headers={"Accept": "text/event-stream"}) as response:
            if response.status_code >= 400:
                response.read()
                check(response)
            kind, data = "message", []
            for line in response.iter_lines():
                if line.startswith(":"):
                    continue
                if line:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        kind = value
                    elif name == "data":
                        data.append(value)
                    continue
                if data:
                    yield Event(kind, json.loads("\n".join(data)))
                    if kind == "done":
                        return
                kind, data = "message", []
