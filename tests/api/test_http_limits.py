"""Over real HTTP: bodies over IMAGEGEN_MAX_BODY_BYTES are a 413 in the endpoint's own error shape,
refused before they are read; idle and slow connections cannot starve real requests."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import httpx
import pytest
from tests.api.live import served

LIMIT = 64 * 1024
GOOD = {"model": "owner/model", "prompt": "a cat", "num_images": 1, "width": 512, "height": 512}


def _connect(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length (what imagegen sends for errors)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", len(body)))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
def server(tmp_path):
    with served(tmp_path, max_body_bytes=LIMIT) as (base_url, world):
        yield base_url, world


@pytest.mark.parametrize(
    ("path", "openai"), [("/api/v1/images/generate", False), ("/v1/images/generations", True)]
)
def test_a_declared_length_over_the_limit_is_413_before_the_body_is_sent(server, path, openai):
    base_url, world = server
    with _connect(base_url) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {100 * 1024 * 1024}\r\n\r\n".encode()
        )
        status, headers, body = _read_response(sock)  # not one byte of the 100 MB was sent
    assert status == 413
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    message = error["message"] if openai else error
    assert str(LIMIT) in message
    assert world.provider.calls == []


@pytest.mark.parametrize(
    ("path", "openai"), [("/api/v1/images/generate", False), ("/v1/images/generations", True)]
)
def test_a_chunked_body_is_refused_as_it_passes_the_limit(server, path, openai):
    base_url, world = server
    chunk = b"x" * 8192
    sent = 0
    with _connect(base_url) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            "transfer-encoding: chunked\r\n\r\n".encode()
        )
        sock.settimeout(0.05)
        answer = b""
        # Keep streaming until the server answers: it must do so soon after the limit, long
        # before the 100 MB a client could send.
        while sent < 100 * 1024 * 1024 and not answer:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                answer = sock.recv(65536, socket.MSG_PEEK)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(30)
        status, _headers, body = _read_response(sock)
    assert status == 413
    assert sent < LIMIT + 4 * 1024 * 1024  # socket buffers, not the whole body
    error = json.loads(body)["error"]
    assert str(LIMIT) in (error["message"] if openai else error)
    assert world.provider.calls == []


def test_a_chunked_body_under_the_limit_is_served(server):
    base_url, _ = server

    def chunks():
        data = json.dumps(GOOD).encode()
        yield data[:10]
        yield data[10:]

    response = httpx.post(
        f"{base_url}/api/v1/images/generate",
        content=chunks(),
        headers={"content-type": "application/json", "prefer": "respond-async"},
        timeout=30,
    )
    assert response.status_code == 202, response.text


def test_idle_and_slowloris_connections_do_not_starve_real_requests(tmp_path):
    with served(tmp_path, header_timeout=1.0, max_connections=60) as (base_url, _):
        idle = [_connect(base_url) for _ in range(40)]
        slow = [_connect(base_url) for _ in range(15)]
        stop = threading.Event()

        def trickle() -> None:  # a header byte now and then, never the end of the headers
            for sock in slow:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            while not stop.wait(0.2):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"x")

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            # 55 of 60 connections are held: a real request is still answered at once.
            assert httpx.get(f"{base_url}/healthz", timeout=10).status_code == 200
            # Every connection that did not send its headers in time is closed, with 408.
            started = time.monotonic()
            for sock in idle:
                sock.settimeout(30)
                status, _, body = _read_response(sock)
                assert status == 408, body
            for sock in slow:
                sock.settimeout(30)
                try:
                    status, _, body = _read_response(sock)
                except ConnectionResetError:  # a trickled byte met the closed socket: RST
                    continue
                assert status == 408, body
            assert time.monotonic() - started < 25
        finally:
            stop.set()
            thread.join(timeout=5)
            for sock in idle + slow:
                sock.close()


def test_past_the_connection_cap_requests_are_503_and_service_resumes(tmp_path):
    with served(tmp_path, header_timeout=1.0, max_connections=20) as (base_url, _):
        idle = [_connect(base_url) for _ in range(25)]
        try:
            time.sleep(0.2)  # let the server accept them all
            refused = httpx.get(f"{base_url}/healthz", timeout=10)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert "connections" in refused.json()["error"]
            openai = httpx.get(f"{base_url}/v1/models", timeout=10)
            assert openai.status_code == 503
            assert openai.json()["error"]["type"] == "server_error"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                answer = httpx.get(f"{base_url}/healthz", timeout=10)
                if answer.status_code == 200:
                    break
                time.sleep(0.2)
            assert answer.status_code == 200  # the idle ones timed out, and service resumed
        finally:
            for sock in idle:
                sock.close()


def test_a_stalled_body_is_408_and_frees_its_connection(tmp_path):
    with served(tmp_path, body_timeout=1.0) as (base_url, world):
        with _connect(base_url) as sock:
            sock.sendall(
                b"POST /api/v1/images/generate HTTP/1.1\r\nhost: x\r\n"
                b"content-type: application/json\r\ncontent-length: 100\r\n\r\n{"
            )
            status, headers, body = _read_response(sock)  # then nothing more is sent
        assert status == 408, body
        assert headers["connection"] == "close"
        assert "request body" in json.loads(body)["error"]
        assert world.provider.calls == []


@pytest.mark.parametrize("key", [b"a\x00b", b"a\xffb", b"a\xed\xa0\x80b"])
def test_an_unstorable_idempotency_key_is_400_and_stores_nothing(server, key):
    base_url, world = server
    body = json.dumps(GOOD).encode()
    with _connect(base_url) as sock:
        sock.sendall(
            b"POST /api/v1/images/generate HTTP/1.1\r\nhost: x\r\n"
            b"content-type: application/json\r\nidempotency-key: " + key + b"\r\n"
            b"content-length: %d\r\n\r\n" % len(body) + body
        )
        status, _, answer = _read_response(sock)
    assert status == 400, answer
    if b"\x00" not in key:  # a NUL in a header is refused by the HTTP parser itself
        assert json.loads(answer)["error"].startswith("Idempotency-Key: ")
    assert world.provider.calls == []
