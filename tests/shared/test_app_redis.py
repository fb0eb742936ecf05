"""The app over Redis (``IMAGEGEN_REDIS_URL``), with the real Replicate provider and its double:
creates take the shared bucket's tokens, an unreachable Redis fails a generation fast with a
503 and ``Retry-After`` before anything is created upstream, and ``/readyz`` follows a Redis that
goes down and comes back. Without Redis, a shared database logs what is not shared."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.fakes.replicate_double import ReplicateDouble
from tests.support.redis import PrivateRedis, free_port, unique_prefix

from imagegen.api.app import create_app
from imagegen.config import Settings
from imagegen.jobs.events import JobEvents
from imagegen.services import build_services
from imagegen.shared.setup import open_shared_state

BODY = {
    "model": "black-forest-labs/flux-schnell",
    "prompt": "a fox",
    "num_images": 1,
    "width": 512,
    "height": 512,
}


def settings(tmp_path: Path, double: ReplicateDouble, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "replicate_api_key": "r8_test",
        "replicate_base_url": double.base_url,
        "replicate_wait": 1,
        "poll_interval": 0.02,
        "request_timeout": 20,
        "return_provider_urls": True,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def app_client() -> Iterator[Any]:
    clients: list[TestClient] = []

    def open_client(config: Settings) -> TestClient:
        services = functools.partial(build_services, environ={})
        client = TestClient(create_app(config, services=services), raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client

    yield open_client
    for client in clients:
        client.__exit__(None, None, None)


def test_creates_take_tokens_from_the_accounts_bucket_in_redis(
    tmp_path: Path, replicate_double: ReplicateDouble, app_client: Any
) -> None:
    from tests.support.redis import server_url

    prefix = unique_prefix()
    client = app_client(
        settings(tmp_path, replicate_double, redis_url=server_url(), redis_prefix=prefix)
    )
    response = client.post("/api/v1/images/generate", json=BODY)
    assert response.status_code == 200, response.text
    import redis

    direct = redis.Redis.from_url(server_url())
    try:
        assert direct.exists(f"{prefix}rate:replicate") == 1  # the account's shared bucket
        direct.delete(f"{prefix}rate:replicate")
    finally:
        direct.close()


def test_an_unreachable_redis_fails_the_generation_with_503_and_creates_nothing(
    tmp_path: Path, replicate_double: ReplicateDouble, app_client: Any
) -> None:
    client = app_client(
        settings(tmp_path, replicate_double, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    )
    started = time.monotonic()
    response = client.post("/api/v1/images/generate", json=BODY)
    assert time.monotonic() - started < 5  # fast, not a wait for the deadline
    assert response.status_code == 503, response.text
    assert "Redis" in response.json()["error"]
    assert int(response.headers["retry-after"]) >= 1
    assert replicate_double.stats()["creates"]["total"] == 0  # never an unthrottled create
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"].startswith("error")


def wait_for_ready(client: TestClient, expected: int, timeout: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/readyz")
        if response.status_code == expected or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_readyz_fails_while_redis_is_down_and_recovers_with_it(
    tmp_path: Path, replicate_double: ReplicateDouble, app_client: Any
) -> None:
    with PrivateRedis(tmp_path) as redis_server:
        client = app_client(settings(tmp_path, replicate_double, redis_url=redis_server.url))
        up = wait_for_ready(client, 200)
        assert up.status_code == 200, up.text
        assert up.json()["checks"]["redis"] == "ok"

        redis_server.stop()
        down = wait_for_ready(client, 503)
        assert down.status_code == 503, down.text
        assert down.json()["checks"]["redis"].startswith("error")
        assert down.json()["checks"]["database"] == "ok"

        redis_server.start()  # the same port
        back = wait_for_ready(client, 200)
        assert back.status_code == 200, back.text
        generated = client.post("/api/v1/images/generate", json=BODY)
        assert generated.status_code == 200, generated.text


@pytest.mark.parametrize(
    ("database_url", "warned"),
    [("postgresql+asyncpg://db.example/imagegen", True), (None, False)],
)
async def test_without_redis_a_shared_database_says_what_is_not_shared(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, database_url: str | None, warned: bool
) -> None:
    config = Settings(_env_file=None, data_dir=tmp_path, database_url=database_url)  # type: ignore[call-arg]
    caplog.set_level(logging.WARNING, logger="imagegen.shared.setup")
    async with AsyncExitStack() as stack:
        assert await open_shared_state(stack, config, JobEvents()) is None
    lines = [r.getMessage() for r in caplog.records if r.name == "imagegen.shared.setup"]
    if warned:
        assert len(lines) == 1
        assert "IMAGEGEN_REDIS_URL" in lines[0]
        assert "create rates" in lines[0]
        assert "job events" in lines[0]
    else:
        assert lines == []
