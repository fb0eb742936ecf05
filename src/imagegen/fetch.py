"""Safe download of provider outputs to a local spool file (no SSRF, no endless bodies).

- Only allow-listed hosts and ports (``imagegen.netpolicy.HostAllowList``): ``replicate.delivery``
  and its subdomains, configured provider base URLs, and ``download_allowed_hosts``.
- Never a private, loopback, link-local, multicast, reserved or unspecified address (IPv4, IPv6,
  IPv4 inside IPv6), checking every resolved address, unless host and port are an exact
  configured entry (a self-hosted provider on 127.0.0.1:8765). The request is pinned to the
  checked address (Host header and TLS SNI keep the name), so a second DNS answer cannot swap in
  another one.
- Redirects followed by hand, at most ``max_redirects``, each hop checked by the same rules.
- The body is streamed to a temp file while hashed (``fetch``), or, by ``fetch_body``, kept in
  memory while it is small (``memory_bytes``, 256 KiB by default) and streamed to a temp file
  from the moment it is not: a larger Content-Length goes to the file from the first byte, a
  body of unknown length once it passes the limit, so a download never holds more than
  ``memory_bytes`` in memory. ``max_bytes`` is enforced on Content-Length and on the bytes
  received, all under one overall ``timeout``. An uncompressed body is asked
  for and a compressed one refused (a gzip bomb would expand in memory before any count).
- A failed attempt is tried again from the original URL (every rule applies again) after a
  connection error, reset or timeout, a 408, 429 or 5xx, a bounded number of times, with short
  exponential backoff and jitter, honouring ``Retry-After``, all within the overall ``timeout``
  (``imagegen.download_retry``). Never after another 4xx: a 404 or 410 means the output expired.
- Only ``Accept-Encoding`` (and ``Host`` when pinned) is sent: no auth, no cookie.

Every failure is an ``ImageFetchError`` whose ``provider`` is the host involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, cast

import httpx

from imagegen import __version__
from imagegen.download_retry import DownloadRetry, is_retryable_status
from imagegen.errors import ImageFetchError
from imagegen.netpolicy import (
    DEFAULT_PORTS,
    HostAllowList,
    HostPolicy,
    Resolver,
    is_public_address,
    might_be_ip,
    system_resolver,
)
from imagegen.retry_after import parse_retry_after
from imagegen.storage.faults import storage_fault
from imagegen.upstream import StreamedReply, Upstream, upstream_of

log = logging.getLogger(__name__)

#: ``fetch_body`` keeps a body up to this size in memory; a larger one is spooled to a file.
MEMORY_BYTES = 256 * 1024

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# An image host sees imagegen named, and is asked for the bytes as stored (no encoding).
_IDENTITY = {"Accept-Encoding": "identity", "User-Agent": f"imagegen/{__version__}"}
# Transport failures worth another attempt: timeouts, connect/read/write errors, and a peer that
# closed mid-message. Not a local protocol error, an unsupported scheme or a proxy failure.
TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class FetchedFile:
    """A completed download: a spool file the caller now owns (move it or delete it)."""

    path: Path
    sha256: str
    size_bytes: int
    url: str


@dataclass(frozen=True, slots=True)
class FetchedBytes:
    """A completed download small enough to have been kept in memory (``fetch_body``)."""

    data: bytes
    sha256: str
    url: str

    @property
    def size_bytes(self) -> int:
        return len(self.data)


class _Transient(Exception):
    """A failed attempt worth repeating; ``error`` is what the caller gets if none succeeds."""

    def __init__(self, error: ImageFetchError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


class SafeFetcher:
    """Downloads provider outputs under the rules in this module's docstring.

    The caller owns and closes ``http`` (an ``Upstream``, or an ``httpx.AsyncClient`` used as
    one); ``fetch`` only borrows it, one request per hop.
    ``retry`` bounds the attempts; ``sleep``, ``clock`` (monotonic seconds) and ``draw`` (jitter,
    in [0, 1)) are injected so tests need not wait.
    """

    def __init__(
        self,
        http: Upstream | httpx.AsyncClient,
        *,
        allowed_hosts: HostPolicy | Iterable[str],
        max_bytes: int,
        timeout: float,
        resolver: Resolver = system_resolver,
        max_redirects: int = 3,
        retry: DownloadRetry | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._http = upstream_of(http)
        self._hosts: HostPolicy = (
            HostAllowList.of(*allowed_hosts)
            if isinstance(allowed_hosts, Iterable)
            else allowed_hosts
        )
        self._max_bytes = max_bytes
        self._timeout = timeout
        # The client's per-phase limits, less those the overall deadline makes moot (one as long
        # starts later, so it never fires first): no timer armed and re-armed per read for them.
        default = self._http.timeout
        self._timeouts = httpx.Timeout(
            connect=_sooner(default.connect, timeout),
            read=_sooner(default.read, timeout),
            write=_sooner(default.write, timeout),
            pool=_sooner(default.pool, timeout),
        )
        self._resolver = resolver
        self._max_redirects = max_redirects
        self._retry = retry or DownloadRetry()
        self._sleep = sleep
        self._clock = clock
        self._draw = draw

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    async def fetch(self, url: str, dest_dir: Path) -> FetchedFile:
        """Download ``url`` into a new temp file in ``dest_dir``; raises ``ImageFetchError``."""
        return cast(FetchedFile, await self._fetch(url, dest_dir, 0))  # 0 in memory: a file

    async def fetch_body(
        self, url: str, dest_dir: Path, *, memory_bytes: int = MEMORY_BYTES
    ) -> FetchedBytes | FetchedFile:
        """Download ``url``: its bytes when there are at most ``memory_bytes`` of them, else a
        new temp file in ``dest_dir`` (streamed there, never held in memory); raises
        ``ImageFetchError``."""
        return await self._fetch(url, dest_dir, memory_bytes)

    async def _fetch(
        self, url: str, dest_dir: Path, memory_bytes: int
    ) -> FetchedBytes | FetchedFile:
        target = _parse_url(url)
        deadline = self._clock() + self._timeout
        try:
            async with asyncio.timeout(self._timeout):
                return await self._attempts(target, dest_dir, deadline, memory_bytes)
        except TimeoutError as exc:
            host = target.host
            message = f"download from {host} timed out after {self._timeout:g}s"
            raise ImageFetchError(message, provider=host) from exc

    async def _attempts(
        self, url: _Url, dest_dir: Path, deadline: float, memory_bytes: int
    ) -> FetchedBytes | FetchedFile:
        attempt = 1
        while True:
            try:
                return await self._follow(url, dest_dir, memory_bytes)
            except _Transient as failed:
                remaining = deadline - self._clock()
                delay = self._retry.delay(attempt, failed.retry_after, remaining, self._draw)
                if delay is None:
                    raise _given_up(failed.error, attempt) from failed.error.__cause__
                log.info("download: %s; attempt %d in %.2fs", failed.error, attempt + 1, delay)
                await self._sleep(delay)
                attempt += 1

    async def _follow(
        self, url: _Url, dest_dir: Path, memory_bytes: int
    ) -> FetchedBytes | FetchedFile:
        for _ in range(self._max_redirects + 1):
            host = url.host
            target, headers, sni_hostname = await self._target(url, host)
            with _translate_http_errors(host):
                reply = self._http.stream(
                    "GET",
                    target,
                    headers=headers,
                    timeouts=self._timeouts,
                    sni_hostname=sni_hostname,
                )
                async with reply as response:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECT_STATUSES and location:
                        url = _parse_url(str(httpx.URL(url.text).join(location)))
                        continue
                    declared = _check_response(response, host, self._max_bytes)
                    if memory_bytes <= 0 or (declared is not None and declared > memory_bytes):
                        return await self._spool(response.aiter_raw(), url, dest_dir)
                    return await self._receive(response, url, dest_dir, memory_bytes)
        host = url.host
        message = f"too many redirects downloading from {host} (limit {self._max_redirects})"
        raise ImageFetchError(message, provider=host)

    async def _target(self, url: _Url, host: str) -> tuple[str, dict[str, str], str | None]:
        """Where the request goes, its headers, and the name TLS checks (None: the URL's).

        An untrusted host is pinned: the URL names the checked address, ``Host`` and SNI the
        host's name."""
        port = url.port or DEFAULT_PORTS[url.scheme]
        if not self._hosts.permits(host, port):
            message = f"refusing to download from {host}: host not allowed on port {port}"
            raise ImageFetchError(message, provider=host)
        if self._hosts.trusts(host, port):
            return url.text, _IDENTITY, None
        address = await self._checked_address(host, port)
        headers = {**_IDENTITY, "Host": url.netloc}
        return _pinned(url, address), headers, host

    async def _checked_address(self, host: str, port: int) -> str:
        if _is_ip_literal(host):
            addresses: Sequence[str] = [host]
        else:
            try:
                addresses = await self._resolver(host, port)
            except OSError as exc:
                raise ImageFetchError(f"could not resolve {host}", provider=host) from exc
        if not addresses:
            raise ImageFetchError(f"could not resolve {host}", provider=host)
        for address in addresses:
            if not is_public_address(address):
                message = f"refusing to download from {host}: private or reserved address"
                raise ImageFetchError(f"{message} {address}", provider=host)
        return addresses[0].split("%", 1)[0]

    async def _spool(
        self,
        body: AsyncIterator[bytes],
        url: _Url,
        dest: Path,
        kept: Sequence[bytes] = (),
    ) -> FetchedFile:
        """``kept`` (received already) and the rest of ``body`` into a new spool file."""
        spool = _Spool(dest)
        try:
            for chunk in kept:
                spool.write(chunk)
            async for chunk in body:
                if spool.size + len(chunk) > self._max_bytes:
                    raise _too_large(url.host, self._max_bytes)
                spool.write(chunk)
            spool.close()
        except BaseException:
            spool.discard()
            raise
        return FetchedFile(spool.path, spool.digest.hexdigest(), spool.size, url.text)

    async def _receive(
        self, response: StreamedReply, url: _Url, dest: Path, memory_bytes: int
    ) -> FetchedBytes | FetchedFile:
        """The body in memory while it is at most ``memory_bytes``; past that, what was kept
        and the rest go to a spool file (``_spool``), so no more than that is ever held."""
        body = response.aiter_raw()  # identity only: see _check_response
        chunks: list[bytes] = []
        size = 0
        async for chunk in body:
            size += len(chunk)
            if size > self._max_bytes:
                raise _too_large(url.host, self._max_bytes)
            if size > memory_bytes:
                return await self._spool(body, url, dest, (*chunks, chunk))
            chunks.append(chunk)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return FetchedBytes(data, hashlib.sha256(data).hexdigest(), url.text)


class _Spool:
    """A temp file and a running sha256. Writes (to the page cache) are cheap enough to do on the
    loop; ``ImageStore.put`` fsyncs before the file becomes visible."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            fd, name = _new_spool_file(directory)
        except OSError as exc:
            raise _local(exc, directory) from exc
        self.path = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        try:
            self.file.write(chunk)
        except OSError as exc:  # the disk, not the download, failed
            raise _local(exc, self.directory) from exc
        self.digest.update(chunk)
        self.size += len(chunk)

    def close(self) -> None:
        try:
            self.file.close()  # flushes the last buffered bytes
        except OSError as exc:
            raise _local(exc, self.directory) from exc

    def discard(self) -> None:
        with contextlib.suppress(OSError):  # a full disk may refuse the last flush too
            self.file.close()
        self.path.unlink(missing_ok=True)


# As ``tempfile.mkstemp`` opens its files: new (never an existing file or link), owner-only.
_SPOOL_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _new_spool_file(directory: Path) -> tuple[int, str]:
    """A new empty file ``.fetch-<random>.part`` in ``directory`` (made if missing): its
    descriptor and path. The directory is made only when the file cannot be (one call, not two,
    per download)."""
    for _ in range(100):
        name = os.path.join(directory, f".fetch-{secrets.token_hex(8)}.part")
        try:
            return os.open(name, _SPOOL_FLAGS, 0o600), name
        except FileNotFoundError:
            directory.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free spool file name in {directory}")


def _sooner(limit: float | None, overall: float) -> float | None:
    """``limit`` when it is shorter than ``overall``, else None (no limit)."""
    return limit if limit is not None and limit < overall else None


def _local(exc: OSError, directory: Path) -> Exception:
    return storage_fault(exc, directory) or exc


def _check_response(response: StreamedReply, host: str, max_bytes: int) -> int | None:
    """Refuses a reply that is no image to keep; else its declared length (None: not given)."""
    status = response.status_code
    if status in (404, 410):
        message = f"image at {host} is no longer available (HTTP {status}); provider outputs expire"
        raise ImageFetchError(message, provider=host)
    if not 200 <= status < 300:
        message = f"download from {host} failed with HTTP {status}"
        if is_retryable_status(status):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise _Transient(ImageFetchError(message, provider=host), retry_after)
        raise ImageFetchError(message, provider=host)
    if response.headers.get("content-encoding", "").strip().lower() not in ("", "identity"):
        message = f"download from {host} failed: compressed responses are refused"
        raise ImageFetchError(message, provider=host)
    declared = response.headers.get("content-length", "")
    if not (declared.isascii() and declared.isdigit()):
        return None
    length = int(declared)
    if length > max_bytes:
        raise _too_large(host, max_bytes)
    return length


def _too_large(host: str, max_bytes: int) -> ImageFetchError:
    return ImageFetchError(f"image from {host} is larger than {max_bytes} bytes", provider=host)


def _given_up(error: ImageFetchError, attempts: int) -> ImageFetchError:
    if attempts == 1:
        return error
    return ImageFetchError(f"{error.message} ({attempts} attempts)", provider=error.provider)


def _transient(message: str, host: str, cause: Exception) -> _Transient:
    error = ImageFetchError(message, provider=host)
    error.__cause__ = cause
    return _Transient(error)


@contextlib.contextmanager
def _translate_http_errors(host: str) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise _transient(f"download from {host} timed out", host, exc) from exc
    except TRANSIENT_ERRORS as exc:
        message = f"could not download from {host}: connection error ({type(exc).__name__})"
        raise _transient(message, host, exc) from exc
    except httpx.TransportError as exc:
        message = f"could not download from {host}: connection error ({type(exc).__name__})"
        raise ImageFetchError(message, provider=host) from exc
    except httpx.HTTPError as exc:
        message = f"could not download from {host}: {type(exc).__name__}"
        raise ImageFetchError(message, provider=host) from exc


class _Url(NamedTuple):
    """A download URL as httpx parses and normalises it: what the fetcher needs of it."""

    scheme: str
    host: str  # lower case, no trailing dot, no brackets
    port: int | None  # None: the scheme's default
    netloc: str  # host (bracketed when IPv6) and port: the Host header
    path: str  # path and query, as sent ("/" for an empty path)
    text: str  # the whole URL, as ``str(httpx.URL(...))`` writes it


# A URL httpx would leave exactly as written, with nothing to decode, quote or drop: http(s), a
# lower-case name or dotted-quad IPv4 host, a port, a path of unreserved and sub-delimiter
# characters (no "%", no "." or ".." segment), a query of those and "/?", no fragment, no
# userinfo. Such a URL is parsed here (one regular expression); any other goes through httpx.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_URL = re.compile(
    r"(?P<scheme>https?)://"
    rf"(?P<host>(?:{_OCTET}\.){{3}}{_OCTET}|[a-z0-9-]+(?:\.[a-z0-9-]+)*)"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
    r"(?P<path>(?:/[A-Za-z0-9_~!$&'()*+,;=:@.-]*)+)"
    r"(?P<query>\?[A-Za-z0-9_~!$&'()*+,;=:@./?-]*)?"
)
# What httpx takes for an IPv4 address (any character between the digits) and then validates.
_IPV4_STYLE = re.compile(r"^[0-9]+.[0-9]+.[0-9]+.[0-9]+$")
_DOTTED_QUAD = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
_DOT_SEGMENT = re.compile(r"/\.\.?(?=/|$)")


def _parse_url(url: str) -> _Url:
    plain = _PLAIN_URL.fullmatch(url) if len(url) <= 8192 else None
    if plain is not None:
        parsed = _plain(plain)
        if parsed is not None:
            return parsed
    try:
        parsed_url = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ImageFetchError("not a valid image URL", provider="imagegen") from exc
    if parsed_url.scheme not in ("http", "https") or not parsed_url.raw_host:
        raise ImageFetchError("image URL must be http(s) with a host", provider="imagegen")
    if parsed_url.userinfo:
        raise ImageFetchError("image URL must not contain credentials", provider="imagegen")
    return _Url(
        parsed_url.scheme,
        parsed_url.raw_host.decode("ascii").lower().rstrip("."),
        parsed_url.port,
        parsed_url.netloc.decode("ascii"),
        parsed_url.raw_path.decode("ascii"),
        str(parsed_url),
    )


def _plain(match: re.Match[str]) -> _Url | None:
    """The parts of a URL ``_PLAIN_URL`` matched; None when httpx would still change or refuse
    it: a default port (dropped), a dot segment (resolved), an out-of-range port, or a host
    httpx reads as IPv4 that is none (refused)."""
    scheme, host, port_text, path = match.group("scheme", "host", "port", "path")
    port = None if port_text is None else int(port_text)
    if port is not None and (port > 65535 or port == DEFAULT_PORTS[scheme]):
        return None
    if _DOT_SEGMENT.search(path) or (_IPV4_STYLE.match(host) and not _DOTTED_QUAD.fullmatch(host)):
        return None
    text = match.string
    query = match.group("query") or ""
    netloc = host if port is None else f"{host}:{port}"
    return _Url(scheme, host, port, netloc, path + query, text)


def _pinned(url: _Url, address: str) -> str:
    """``url`` with ``address`` for its host, as ``str(httpx.URL.copy_with(host=address))``
    reads but without a second parse of the whole URL: the same request line; no fragment
    (never sent), "/" for an empty path (what is sent)."""
    host = f"[{address}]" if ":" in address else address
    port = "" if url.port is None else f":{url.port}"
    return f"{url.scheme}://{host}{port}{url.path}"


def _is_ip_literal(host: str) -> bool:
    if not might_be_ip(host):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
