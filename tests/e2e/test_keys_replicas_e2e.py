"""API keys across ``imagegen serve`` replicas sharing one PostgreSQL database, as real processes
over real HTTP, keys made with the CLI:

- with one Redis too, a key's requests per minute hold for the key, not per replica: a burst
  spread over two replicas gets exactly ``--rpm`` successes, then 429 ``rate_limit_exceeded``
  with ``Retry-After`` on both;
- a key revoked on replica A stops working on replica B within ``IMAGEGEN_KEY_CACHE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from tests.db import postgres_database
from tests.e2e.conftest import imagegen
from tests.e2e.test_keys_e2e import imagegen_cli
from tests.fakes.replicate_double import DoubleProcess
from tests.support.redis import server_url, unique_prefix

pytestmark = pytest.mark.e2e

SEED = "/api/v1/images/generate"
OPENAI = "/v1/images/generations"
MODEL = "black-forest-labs/flux-schnell"
BODY = {"model": MODEL, "prompt": "a kite", "num_images": 1, "width": 256, "height": 256}


def create_key(workdir: Path, database_url: str, name: str, *options: str) -> str:
    """``imagegen keys create`` against the shared database; the key is its last line."""
    created = imagegen_cli(
        workdir, "keys", "create", name, *options, IMAGEGEN_DATABASE_URL=database_url
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


@pytest.mark.timeout(180)
async def test_a_keys_rpm_is_shared_exactly_by_two_replicas(
    tmp_path: Path, double: DoubleProcess
) -> None:
    rpm, requests = 5, 16
    async with postgres_database() as database_url:
        key = create_key(tmp_path / "cli", database_url, "web", "--rpm", str(rpm))
        shared = {
            "IMAGEGEN_DATABASE_URL": database_url,
            "IMAGEGEN_REDIS_URL": server_url(),
            "IMAGEGEN_REDIS_PREFIX": unique_prefix(),
        }
        with (
            imagegen(tmp_path / "a", double, IMAGEGEN_INSTANCE_ID="a", **shared) as a,
            imagegen(tmp_path / "b", double, IMAGEGEN_INSTANCE_ID="b", **shared) as b,
        ):
            replicas = [a.base_url, b.base_url]
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(timeout=60, headers=headers) as api:
                burst = await asyncio.gather(
                    *(api.post(replicas[i % 2] + SEED, json=BODY) for i in range(requests))
                )
                after = [
                    await api.post(url + OPENAI, json={"model": MODEL, "prompt": "a kite"})
                    for url in replicas
                ]
    statuses = [response.status_code for response in burst]
    assert statuses.count(200) == rpm, statuses  # for the key, not rpm per replica
    assert statuses.count(429) == requests - rpm, statuses
    for response in burst:
        if response.status_code == 429:
            assert "may send 5 requests per minute" in response.json()["error"]
            assert 1 <= int(response.headers["retry-after"]) <= 60
    for response in after:  # then both replicas refuse, in OpenAI's shape too
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(response.headers["retry-after"]) <= 60


@pytest.mark.timeout(180)
async def test_a_key_revoked_on_a_stops_on_b_within_the_cache_time(
    tmp_path: Path, double: DoubleProcess
) -> None:
    cache_seconds = 2.0
    async with postgres_database() as database_url:
        admin = create_key(tmp_path / "cli", database_url, "ops", "--admin")
        key = create_key(tmp_path / "cli", database_url, "app")
        shared = {
            "IMAGEGEN_DATABASE_URL": database_url,
            "IMAGEGEN_KEY_CACHE_SECONDS": str(cache_seconds),
        }
        with (
            imagegen(tmp_path / "a", double, IMAGEGEN_INSTANCE_ID="a", **shared) as a,
            imagegen(tmp_path / "b", double, IMAGEGEN_INSTANCE_ID="b", **shared) as b,
        ):
            async with httpx.AsyncClient(timeout=60) as api:
                as_app = {"Authorization": f"Bearer {key}"}
                on_b = await api.get(f"{b.base_url}/api/v1/generations", headers=as_app)
                assert on_b.status_code == 200, on_b.text  # B has looked the key up: cached
                revoked = await api.delete(
                    f"{a.base_url}/api/v1/keys/app", headers={"Authorization": f"Bearer {admin}"}
                )
                assert revoked.status_code == 200, revoked.text
                revoked_at = time.monotonic()
                on_a = await api.get(f"{a.base_url}/api/v1/generations", headers=as_app)
                assert on_a.status_code == 401  # at once where it was revoked
                while True:
                    on_b = await api.get(f"{b.base_url}/api/v1/generations", headers=as_app)
                    if on_b.status_code != 200 or time.monotonic() - revoked_at > 30:
                        break
                    await asyncio.sleep(0.05)
                stopped_after = time.monotonic() - revoked_at
                generate = await api.post(f"{b.base_url}{SEED}", json=BODY, headers=as_app)
    assert on_b.status_code == 401, on_b.text
    assert on_b.json() == {"error": "invalid API key"}
    assert generate.status_code == 401
    assert stopped_after <= cache_seconds + 1.0, stopped_after  # not a stale cache for good
