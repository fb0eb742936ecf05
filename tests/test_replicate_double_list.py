"""The Replicate double's ``GET /v1/predictions``: newest first, 100 a page by default, ``next``
as a URL carrying a cursor, ``created_after`` (inclusive) and ``created_before`` (exclusive);
read by the official ``replicate`` client's own paging, as imagegen's recovery reads it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import replicate
from tests.fakes.replicate_double import ReplicateDouble
from tests.fakes.replicate_models import FLUX_SCHNELL_REF

TOKEN = "r8_test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def double(clock: Clock) -> Iterator[ReplicateDouble]:
    with ReplicateDouble(clock=clock) as running:
        running.configure(list_page_size=3)
        yield running


def create(api: httpx.Client, prompt: str) -> str:
    response = api.post(
        f"/v1/models/{FLUX_SCHNELL_REF}/predictions", json={"input": {"prompt": prompt}}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
def made(double: ReplicateDouble, clock: Clock) -> list[str]:
    """Seven predictions, one a second, oldest first."""
    ids = []
    with httpx.Client(base_url=double.base_url, headers=AUTH) as api:
        for n in range(7):
            ids.append(create(api, f"prompt {n}"))
            clock.now += 1
    return ids


def test_pages_are_newest_first_and_next_is_a_url_with_a_cursor(double, made):
    with httpx.Client(headers=AUTH) as api:
        url: str | None = f"{double.base_url}/v1/predictions"
        pages = []
        while url is not None:
            body = api.get(url).json()
            pages.append([p["id"] for p in body["results"]])
            assert body["previous"] is None
            url = body["next"]
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [pid for page in pages for pid in page] == made[::-1]


def test_results_carry_model_version_and_the_exact_input(double, made):
    with httpx.Client(base_url=double.base_url, headers=AUTH) as api:
        first = api.get("/v1/predictions").json()["results"][0]
    assert first["id"] == made[-1]
    assert (first["model"], first["version"]) == (FLUX_SCHNELL_REF, "hidden")
    assert first["input"] == {"prompt": "prompt 6"}
    assert first["created_at"].endswith("Z")


def test_created_after_is_inclusive_and_created_before_exclusive_across_pages(double, made, clock):
    start = clock.now - 7  # the first prediction's creation time
    params = {"created_after": iso(start + 1), "created_before": iso(start + 6)}
    with httpx.Client(base_url=double.base_url, headers=AUTH) as api:
        body = api.get("/v1/predictions", params=params).json()
        ids = [p["id"] for p in body["results"]]
        while body["next"]:
            assert "created_after" in body["next"]  # the filters ride along with the cursor
            body = api.get(body["next"]).json()
            ids += [p["id"] for p in body["results"]]
    assert ids == made[1:6][::-1]


def test_a_malformed_filter_or_cursor_is_a_400(double):
    with httpx.Client(base_url=double.base_url, headers=AUTH) as api:
        assert api.get("/v1/predictions", params={"created_after": "yesterday"}).status_code == 400
        assert api.get("/v1/predictions", params={"cursor": "%%%"}).status_code == 400
        assert httpx.get(f"{double.base_url}/v1/predictions").status_code == 401


def test_the_official_client_pages_through_every_prediction(double, made):
    client = replicate.Client(api_token=TOKEN, base_url=double.base_url)
    listed = [p.id for page in replicate.paginate(client.predictions.list) for p in page]
    assert listed == made[::-1]
