"""Per-key limits over real HTTP: each refusal's status, message and Retry-After in both
endpoints' shapes, checked before any upstream call, and nothing stored for it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.fakes.images import make_image
from tests.fakes.openai_double import OpenAIDouble
from tests.fakes.replicate_double import ReplicateDouble
from tests.keys.conftest import Served

SEED = "/api/v1/images/generate"
OPENAI = "/v1/images/generations"
FLUX = {"model": "flux", "prompt": "a crane", "num_images": 1, "width": 512, "height": 512}
DALLE = {"model": "dall-e-3", "prompt": "a crane", "size": "1024x1024"}
ASYNC = {"Prefer": "respond-async"}


def stored(served: Served) -> int:
    with served.client(served.admin_key) as admin:
        return len(admin.get("/api/v1/generations", params={"limit": 100}).json()["data"])


def test_requests_per_minute(served: Served, replicate_double: ReplicateDouble) -> None:
    key = served.new_key("rpm2", rpm=2)
    with served.client(key) as api:
        assert api.post(SEED, json=FLUX).status_code == 200
        assert api.post(OPENAI, json=DALLE).status_code == 200
        creates = replicate_double.stats()["creates"]["total"]
        seed = api.post(SEED, json=FLUX)
        v1 = api.post(OPENAI, json=DALLE)
    assert seed.status_code == v1.status_code == 429
    pattern = r"rate limit exceeded: key 'rpm2' may send 2 requests per minute; retry in (\d+) s"
    match = re.fullmatch(pattern, seed.json()["error"])
    assert match
    assert 1 <= int(match.group(1)) <= 60
    assert 1 <= int(seed.headers["retry-after"]) <= 60
    assert v1.json()["error"]["code"] == "rate_limit_exceeded"
    assert v1.json()["error"]["type"] == "requests"
    assert v1.headers["retry-after"]
    assert replicate_double.stats()["creates"]["total"] == creates  # no upstream call
    assert stored(served) == 2


def test_concurrent_generations(served: Served, replicate_double: ReplicateDouble) -> None:
    replicate_double.configure(duration=30)
    key = served.new_key("one-at-a-time", max_concurrent=1)
    with served.client(key) as api:
        running = api.post(SEED, json=FLUX, headers=ASYNC).json()
        refused = api.post(SEED, json=FLUX, headers=ASYNC)
        assert refused.status_code == 429
        assert refused.json() == {
            "error": "concurrency limit exceeded: key 'one-at-a-time' may run 1 generations at "
            "once; retry when one finishes"
        }
        assert refused.headers["retry-after"] == "1"
        v1 = api.post(OPENAI, json=DALLE)
        assert v1.status_code == 429
        assert v1.json()["error"]["code"] == "rate_limit_exceeded"
        assert stored(served) == 1
        api.post(f"/api/v1/generations/{running['id']}/cancel")
        replicate_double.configure(duration=0.05)
        assert api.post(SEED, json=FLUX).status_code == 200  # the slot is free again


def test_images_per_day(served: Served, openai_double: OpenAIDouble) -> None:
    key = served.new_key("daily3", images_per_day=3)
    with served.client(key) as api:
        assert api.post(SEED, json={**FLUX, "num_images": 2}).status_code == 200
        calls = openai_double.stats()["total_calls"]
        seed = api.post(SEED, json={**FLUX, "num_images": 2})
        v1 = api.post(OPENAI, json={**DALLE, "model": "sdxl", "n": 2, "size": "512x512"})
        assert api.post(SEED, json=FLUX).status_code == 200  # the third image still fits
        last = api.post(SEED, json=FLUX)
    reset = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    assert seed.status_code == v1.status_code == last.status_code == 429
    assert seed.json() == {
        "error": "quota exceeded: key 'daily3' may make 3 images per day (UTC); 2 made or in "
        f"progress today, 2 asked for; resets at {reset}"
    }
    assert v1.json()["error"]["code"] == "insufficient_quota"
    assert v1.json()["error"]["type"] == "insufficient_quota"
    until_reset = int(seed.headers["retry-after"])
    assert 0 < until_reset <= 86400
    assert "3 made or in progress today, 1 asked for" in last.json()["error"]
    assert openai_double.stats()["total_calls"] == calls
    assert stored(served) == 2


def test_allowed_models(served: Served, openai_double: OpenAIDouble) -> None:
    key = served.new_key("flux-only", models=["flux"])
    with served.client(key) as api:
        assert api.post(SEED, json={**FLUX, "model": "flux-schnell"}).status_code == 200
        seed = api.post(SEED, json={**FLUX, "model": "sdxl"})
        v1 = api.post(OPENAI, json=DALLE)
    assert seed.status_code == v1.status_code == 403
    assert seed.json() == {
        "error": "model 'sdxl' is not allowed for key 'flux-only' (allowed: flux)"
    }
    assert v1.json()["error"]["code"] == "model_not_allowed"
    assert openai_double.stats()["total_calls"] == 0
    assert stored(served) == 1


def test_admin_keys_without_limits_are_not_limited(served: Served) -> None:
    with httpx.Client(
        base_url=served.base_url,
        headers={"Authorization": f"Bearer {served.admin_key}"},
        timeout=30,
    ) as admin:
        for _ in range(3):
            assert admin.post(SEED, json=FLUX).status_code == 200


EDITS = "/v1/images/edits"


def image_files(served: Served) -> list[str]:
    """Every file in the data directory that is not the database."""
    return sorted(
        str(path.relative_to(served.data_dir))
        for path in served.data_dir.rglob("*")
        if path.is_file() and ".db" not in path.name and path.name != "imagegen.lock"
    )


def edit(api: httpx.Client, colour: tuple[int, int, int]) -> httpx.Response:
    photo = make_image(64, 64, "png", colour)
    return api.post(
        EDITS,
        data={"model": "black-forest-labs/flux-kontext-pro", "prompt": "a hat"},
        files=[("image", ("photo.png", photo, "image/png"))],
    )


@pytest.mark.parametrize(
    ("limits", "status"),
    [
        ({"rpm": 1}, 429),
        ({"images_per_day": 1}, 429),
        ({"models": ["black-forest-labs/flux-kontext-pro"]}, None),  # allowed
        ({"models": ["flux"]}, 403),
    ],
)
def test_an_edit_refused_by_its_keys_limits_stores_no_input_image(
    served: Served, limits: dict[str, Any], status: int | None
) -> None:
    key = served.new_key("editor", **limits)
    with served.client(key) as api:
        if status != 403:
            first = edit(api, (200, 10, 10))
            assert first.status_code == 200, first.text
        before = image_files(served)
        second = edit(api, (10, 10, 200))  # another image: another content-addressed key
    after = image_files(served)
    if status is None:
        assert second.status_code == 200, second.text
        assert len(after) > len(before)  # the check sees a stored image
    else:
        assert second.status_code == status, second.text
        assert after == before
