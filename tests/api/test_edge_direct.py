"""The edge serves the create endpoints straight to their handler once FastAPI's routing has
chosen it (``api/edge.py``, ``DirectRoute``): every answer is the one the full stack gives,
status, body and headers, errors included."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.api.conftest import FakeWorld
from tests.api.live import served
from tests.api.test_http_limits import GOOD, _connect, _read_response
from tests.api.test_json_route import BODIES, CONTENT_TYPES, GOOD_KEY, services

from imagegen.api.app import create_app
from imagegen.api.deps import Services
from imagegen.api.edge import EdgeMiddleware
from imagegen.api.json_route import DIRECT
from imagegen.config import Settings

SEED = "/api/v1/images/generate"
OPENAI = "/v1/images/generations"
VARYING = {"x-request-id", "server-timing", "content-length"}  # per request by nature


def edge_of(app: FastAPI) -> EdgeMiddleware:
    layer: Any = app.middleware_stack
    while not isinstance(layer, EdgeMiddleware):
        layer = layer.app
    return layer


@contextmanager
def full_stack_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The edge as it was: every request through FastAPI's layers."""
    with monkeypatch.context() as patch:
        patch.setattr(EdgeMiddleware, "_learn", lambda self, scope: scope.pop(DIRECT, None))
        yield


def app_over(built: Services) -> FastAPI:
    @asynccontextmanager
    async def factory(settings: Settings) -> AsyncIterator[Services]:
        yield built

    return create_app(built.settings, services=factory)


def answers(client: TestClient, path: str, sent: dict[str, str]) -> list[tuple[Any, ...]]:
    got = []
    for body in BODIES:
        for query in ("", "?x=%00"):
            response = client.post(path + query, content=body, headers=sent)
            headers = [(k, v) for k, v in response.headers.items() if k not in VARYING]
            got.append((body, query, response.status_code, response.json(), headers))
    return got


@pytest.mark.parametrize("path", [SEED, OPENAI])
@pytest.mark.parametrize("authorization", [GOOD_KEY, None])
def test_direct_errors_are_the_full_stacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, authorization: str | None
) -> None:
    built = services(tmp_path)
    for content_type in CONTENT_TYPES:
        headers = {"authorization": authorization, "content-type": content_type}
        sent = {name: value for name, value in headers.items() if value is not None}
        with full_stack_only(monkeypatch):
            app = app_over(built)
            with TestClient(app, raise_server_exceptions=False) as client:
                expected = answers(client, path, sent)
            assert edge_of(app).direct == {}
        app = app_over(built)
        with TestClient(app, raise_server_exceptions=False) as client:
            client.post(path, content=b"{}", headers=sent)  # routing chooses the handler once
            assert list(edge_of(app).direct) == [path]
            assert answers(client, path, sent) == expected


def test_generations_are_answered_as_by_the_full_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"model": "owner/model", "prompt": "a cat", "num_images": 1, "width": 512, "height": 512}
    requests = [
        (SEED, body, {}),
        (SEED, body, {"prefer": "respond-async"}),
        (OPENAI, {"prompt": "a cat", "model": "owner/model"}, {}),
        (OPENAI, {"prompt": "a cat", "model": "owner/model", "n": 0}, {}),
        (SEED, body, {"idempotency-key": "k1"}),
        (SEED, {**body, "prompt": "a dog"}, {"idempotency-key": "k1"}),  # reused: 422
    ]

    def run(world: FakeWorld) -> list[tuple[Any, ...]]:
        app = create_app(world.settings, services=world.services)
        got = []
        with TestClient(app) as client:
            for path, json_body, headers in requests * 2:
                sent = {**headers, "x-request-id": "req-1"}
                response = client.post(path, json=json_body, headers=sent)
                shown = response.json()
                if response.status_code < 300:
                    shown = sorted(shown)  # ids and times differ from run to run
                names = [k for k in response.headers if k != "location"]
                got.append((response.status_code, shown, names, response.headers["x-request-id"]))
                assert response.headers["content-length"] == str(len(response.content))
                assert response.headers["server-timing"].startswith("imagegen;dur=")
            direct = dict(edge_of(app).direct)
        return got, direct  # type: ignore[return-value]

    with full_stack_only(monkeypatch):
        expected, none = run(FakeWorld(tmp_path / "full"))
    got, direct = run(FakeWorld(tmp_path / "direct"))
    assert none == {}
    assert sorted(direct) == sorted([SEED, OPENAI])
    assert got == expected


def test_an_unexpected_error_is_the_server_error_middlewares(tmp_path: Path) -> None:
    built = services(tmp_path)
    built.auth = None  # anonymous: the request reaches the endpoint, whose runner is missing

    app = app_over(built)
    sent = {"content-type": "application/json"}
    body = (
        b'{"model": "owner/model", "prompt": "a cat", "num_images": 1, "width": 64, "height": 64}'
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        first = client.post(SEED, content=body, headers=sent)
        second = client.post(SEED, content=body, headers=sent)
    assert list(edge_of(app).direct) == [SEED]
    assert first.status_code == second.status_code == 500
    assert first.json() == second.json() == {"error": "internal error"}
    assert "x-request-id" not in second.headers  # as ever: the 500 is sent outside the edge


def test_no_direct_route_under_a_root_path_or_for_other_methods(tmp_path: Path) -> None:
    built = services(tmp_path)
    app = app_over(built)
    with TestClient(app, raise_server_exceptions=False, root_path="/base") as client:
        assert client.post(SEED, content=b"{}").status_code == 401
        assert client.get(SEED).status_code == 405
    assert edge_of(app).direct == {}


def test_over_real_http_the_direct_routes_keep_the_body_limits(tmp_path: Path) -> None:
    """413 for a chunked body past the limit, 408 for a stalled one (both closing the
    connection), a chunked body under it read whole: once the routes are served directly."""
    limit = 64 * 1024
    with served(tmp_path, max_body_bytes=limit, body_timeout=1.0) as (base_url, world):
        for path in (SEED, OPENAI):  # routing chooses each handler once
            first = httpx.post(base_url + path, json={}, timeout=30)
            assert first.status_code == 400
        for path in (SEED, OPENAI):
            with _connect(base_url) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                    "transfer-encoding: chunked\r\n\r\n".encode()
                )
                chunk = b"x" * 8192
                for _ in range(limit // len(chunk) + 2):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                status, headers, body = _read_response(sock)
            assert status == 413, body
            assert headers["connection"] == "close"
            assert headers["x-request-id"].startswith("req_")
            assert str(limit) in body.decode()
            with _connect(base_url) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                    "content-length: 100\r\n\r\n{".encode()
                )
                status, headers, body = _read_response(sock)  # then nothing more is sent
            assert status == 408, body
            assert headers["connection"] == "close"
        assert world.provider.calls == []

        def chunks() -> Iterator[bytes]:
            data = json.dumps(GOOD).encode()
            yield data[:10]
            yield data[10:]

        response = httpx.post(
            base_url + SEED,
            content=chunks(),
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["prompt"] == GOOD["prompt"]
        assert len(world.provider.calls) == 1
