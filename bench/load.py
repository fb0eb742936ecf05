"""The load generator: a tiny HTTP/1.1 keep-alive client on asyncio streams, and two loops.

A general-purpose client (httpx, aiohttp) spends more CPU per request than the server under test
on a 2-core machine, so the generator speaks just enough HTTP/1.1 itself: one request at a time
per connection, ``Content-Length`` or chunked bodies, keep-alive. Every loop is bounded in count
and in time, and only ever talks to loopback addresses.

- ``open_loop``: requests *start* at a fixed rate whatever the latency (no coordinated omission);
- ``closed_loop``: ``concurrency`` workers, each sending its next request when the last ends.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = ("127.", "localhost", "[::1]")


class HttpError(Exception):
    """The connection failed or the reply was not HTTP/1.1 we can read."""

    def __init__(self, message: str, *, nothing_read: bool = False) -> None:
        super().__init__(message)
        #: The server closed the connection before answering (an idle keep-alive timing out).
        self.nothing_read = nothing_read


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def split_url(url: str) -> tuple[str, int, str]:
    """``http://127.0.0.1:8000/x?y`` -> host, port, path; refuses anything but loopback."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not host.startswith(LOOPBACK):
        raise ValueError(f"the load generator only talks to loopback http URLs, not {url!r}")
    path = parts.path or "/"
    return host, parts.port or 80, path + (f"?{parts.query}" if parts.query else "")


class Connection:
    """One keep-alive HTTP/1.1 connection; not shared between concurrent requests."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=1 << 20
            )
        assert self._reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        try:
            return await self._read(self._reader, method)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.close()
            empty = isinstance(exc, asyncio.IncompleteReadError) and not exc.partial
            raise HttpError(f"{type(exc).__name__}: {exc}", nothing_read=empty) from exc

    async def _read(self, reader: asyncio.StreamReader, method: str) -> Reply:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        else:
            body = await reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Reply(status, headers, body)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


class Client:
    """Keep-alive connections to one loopback origin, handed out one request at a time."""

    def __init__(self, base_url: str) -> None:
        self.host, self.port, prefix = split_url(base_url)
        self._prefix = prefix.rstrip("/")
        self._idle: list[Connection] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Reply:
        body = None
        all_headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            all_headers["Content-Type"] = "application/json"
        reused = bool(self._idle)
        connection = self._idle.pop() if reused else Connection(self.host, self.port)
        try:
            async with asyncio.timeout(timeout):
                try:
                    reply = await connection.request(method, self._prefix + path, body, all_headers)
                except HttpError as exc:
                    if not (reused and exc.nothing_read):
                        raise
                    connection = Connection(self.host, self.port)  # the idle one had timed out
                    reply = await connection.request(method, self._prefix + path, body, all_headers)
        except BaseException:
            connection.close()
            raise
        self._idle.append(connection)
        return reply

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("POST", path, **kwargs)

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


@dataclass
class Sample:
    """One request: when it started (seconds from the loop's start), how long, what it got."""

    started: float
    seconds: float
    status: int  # 0: transport error or timeout
    error: str | None = None
    label: str = ""


@dataclass
class Samples:
    items: list[Sample] = field(default_factory=list)

    def ok(self, label: str | None = None) -> list[Sample]:
        return [s for s in self.of(label) if 200 <= s.status < 300]

    def of(self, label: str | None = None) -> list[Sample]:
        return [s for s in self.items if label is None or s.label == label]

    def errors(self, label: str | None = None) -> list[Sample]:
        return [s for s in self.of(label) if not 200 <= s.status < 300]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


Call = Callable[[], Awaitable[int]]
"""One request: returns the HTTP status (or raises)."""


async def timed(call: Call, started: float, label: str, samples: Samples) -> None:
    begin = time.perf_counter()
    try:
        status, error = await call(), None
    except (HttpError, OSError, TimeoutError) as exc:
        status, error = 0, f"{type(exc).__name__}: {exc}"
    samples.items.append(Sample(started, time.perf_counter() - begin, status, error, label))


async def open_loop(calls: list[tuple[str, Call]], *, rate: float, duration: float) -> Samples:
    """Start ``calls`` round-robin, ``rate`` per second for ``duration`` seconds; wait for all.

    Requests start on schedule even when earlier ones are slow, so queueing shows up as latency.
    """
    samples = Samples()
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    total = int(rate * duration)
    for index in range(total):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        label, call = calls[index % len(calls)]
        task = asyncio.create_task(timed(call, due - start, label, samples))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return samples


async def closed_loop(
    call: Call, *, concurrency: int, duration: float, label: str = ""
) -> tuple[Samples, float]:
    """``concurrency`` workers loop on ``call`` for ``duration`` seconds; (samples, elapsed)."""
    samples = Samples()
    start = time.perf_counter()
    stop = start + duration

    async def worker() -> None:
        while time.perf_counter() < stop:
            await timed(call, time.perf_counter() - start, label, samples)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return samples, time.perf_counter() - start


async def all_at_once(calls: list[Call], *, ramp: float = 0.0, label: str = "") -> Samples:
    """Start every call, spread evenly over ``ramp`` seconds (0: at once); wait for all."""
    samples = Samples()
    start = time.perf_counter()

    async def one(index: int, call: Call) -> None:
        if ramp > 0:
            await asyncio.sleep(ramp * index / len(calls))
        await timed(call, time.perf_counter() - start, label, samples)

    await asyncio.gather(*(one(i, c) for i, c in enumerate(calls)))
    return samples
