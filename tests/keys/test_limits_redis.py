"""Requests per minute with ``IMAGEGEN_REDIS_URL`` set, over real HTTP: counted in Redis (the 429
carries ``Retry-After``), and an unreachable Redis refuses the request with 503 and
``Retry-After`` before anything is stored or sent upstream, never lets it through unlimited."""

from __future__ import annotations

from collections.abc import Callable

import redis
from tests.fakes.openai_double import OpenAIDouble
from tests.keys.conftest import Served
from tests.support.redis import free_port, server_url, unique_prefix

SEED = "/api/v1/images/generate"
OPENAI = "/v1/images/generations"
DALLE = {"model": "dall-e-3", "prompt": "a heron", "size": "1024x1024"}
Start = Callable[..., Served]


def test_a_keys_rpm_is_counted_in_redis(start: Start) -> None:
    prefix = unique_prefix()
    served = start(redis_url=server_url(), redis_prefix=prefix)
    key = served.new_key("rpm1", rpm=1)
    direct = redis.Redis.from_url(server_url())
    try:
        with served.client(key) as api:
            assert api.post(OPENAI, json=DALLE).status_code == 200
            refused = api.post(OPENAI, json=DALLE)
        counted = direct.keys(f"{prefix}keyrate:*")
        assert len(counted) == 1
        assert direct.zcard(counted[0]) == 1
    finally:
        for name in direct.keys(f"{prefix}*"):
            direct.delete(name)
        direct.close()
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_an_unreachable_redis_refuses_a_limited_key_with_503(
    start: Start, openai_double: OpenAIDouble
) -> None:
    served = start(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    key = served.new_key("rpm5", rpm=5)
    with served.client(key) as api:
        v1 = api.post(OPENAI, json=DALLE)
        seed = api.post(
            SEED,
            json={
                "model": "dall-e-3",
                "prompt": "a heron",
                "num_images": 1,
                "width": 512,
                "height": 512,
            },
        )
    for response in (v1, seed):
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) >= 1
    assert "request rate could not be checked" in seed.json()["error"]
    assert "Redis is unreachable" in v1.json()["error"]["message"]
    assert openai_double.stats()["total_calls"] == 0  # nothing went upstream
    with served.client(served.admin_key) as admin:
        assert admin.get("/api/v1/generations").json()["data"] == []  # nothing stored
