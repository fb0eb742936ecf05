"""Usage and cost over real HTTP: ``GET /api/v1/usage`` totals equal the sum over the
generations, with costs from the catalog's prices (per image, or per second of Replicate's
``metrics.predict_time``), unknown costs left unknown."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from tests.fakes.openai_double import OpenAIDouble
from tests.fakes.replicate_double import ReplicateDouble
from tests.keys.conftest import PRICE_PER_IMAGE, PRICE_PER_SECOND, Served, cli

SEED = "/api/v1/images/generate"
OPENAI = "/v1/images/generations"
FLUX = {"model": "flux", "prompt": "a lynx", "num_images": 1, "width": 512, "height": 512}


def workload(served: Served, replicate: ReplicateDouble) -> None:
    alice, bob = served.new_key("alice"), served.new_key("bob")
    with served.client(alice) as a, served.client(bob) as b:
        assert a.post(SEED, json=FLUX).status_code == 200
        assert a.post(SEED, json={**FLUX, "num_images": 2}).status_code == 200
        assert a.post(OPENAI, json={"model": "dall-e-3", "prompt": "x"}).status_code == 200
        sdxl = {"model": "sdxl", "prompt": "x", "n": 2, "size": "512x512"}
        assert b.post(OPENAI, json=sdxl).status_code == 200
        replicate.script("fail_prediction", error="the model crashed")
        assert b.post(SEED, json=FLUX).status_code >= 400


def generations(served: Served) -> list[dict[str, Any]]:
    with served.client(served.admin_key) as admin:
        return list(admin.get("/api/v1/generations", params={"limit": 100}).json()["data"])


def summed(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "images": sum(
            g["num_images"] - g["images_missing"] for g in items if g["status"] == "succeeded"
        ),
        "generations": len(items),
        "failures": sum(g["status"] == "failed" for g in items),
        "cost": pytest.approx(sum(g["cost"] or 0.0 for g in items)),
        "unpriced": sum(g["cost"] is None for g in items),
    }


def spent(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("images", "generations", "failures", "cost", "unpriced")}


def test_costs_come_from_the_catalogs_prices(
    served: Served, replicate_double: ReplicateDouble
) -> None:
    workload(served, replicate_double)
    items = generations(served)
    flux_ok = [g for g in items if g["model"] == "flux" and g["status"] == "succeeded"]
    assert len(flux_ok) == 2
    for g in flux_ok:
        billed = 0.0
        for prediction in g["predictions"]:
            url = f"{replicate_double.base_url}/_double/predictions/{prediction['id']}"
            billed += httpx.get(url).json()["metrics"]["predict_time"]
        assert g["predict_seconds"] == pytest.approx(billed)
        assert g["cost"] == pytest.approx(billed * PRICE_PER_SECOND)
    (dalle,) = [g for g in items if g["model"] == "dall-e-3"]
    assert dalle["cost"] == pytest.approx(PRICE_PER_IMAGE)
    (sdxl,) = [g for g in items if g["model"] == "sdxl"]
    assert sdxl["cost"] is None  # no price in the catalog: unknown, never guessed
    (failed,) = [g for g in items if g["status"] == "failed"]
    assert failed["cost"] is None  # Replicate bills failed runs by the second; none reported


def test_usage_totals_equal_the_sum_over_generations(
    served: Served, replicate_double: ReplicateDouble
) -> None:
    workload(served, replicate_double)
    items = generations(served)
    with served.client(served.admin_key) as admin:
        by_key = admin.get("/api/v1/usage", params={"group_by": "key"}).json()
        by_model = admin.get("/api/v1/usage", params={"group_by": "model"}).json()
        by_day = admin.get("/api/v1/usage", params={"group_by": "day"}).json()
    assert spent(by_key["total"]) == summed(items)
    assert spent(by_model["total"]) == summed(items)
    assert spent(by_day["total"]) == summed(items)
    keys = {entry["key"]: spent(entry) for entry in by_key["data"]}
    assert set(keys) == {"alice", "bob"}
    assert keys["alice"]["images"] == 4
    assert keys["alice"]["failures"] == 0
    assert keys["alice"]["unpriced"] == 0
    assert keys["bob"] == {"images": 2, "generations": 2, "failures": 1, "cost": 0.0, "unpriced": 2}
    models = {entry["model"]: spent(entry) for entry in by_model["data"]}
    assert models["dall-e-3"]["cost"] == pytest.approx(PRICE_PER_IMAGE)
    assert models["flux"]["generations"] == 3
    assert models["flux"]["failures"] == 1
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert [entry["day"] for entry in by_day["data"]] == [today]
    assert by_day["from"].startswith(today[:8] + "01T00:00:00")


def test_a_key_sees_only_its_own_usage(served: Served, replicate_double: ReplicateDouble) -> None:
    workload(served, replicate_double)
    bob = served.new_key("bob2")
    with served.client(bob) as b:
        mine = b.get("/api/v1/usage").json()
    assert mine["data"] == []
    assert mine["total"]["generations"] == 0


def test_usage_periods_and_bad_input(served: Served, replicate_double: ReplicateDouble) -> None:
    workload(served, replicate_double)
    with served.client(served.admin_key) as admin:
        by_default = admin.get("/api/v1/usage")
        empty = admin.get("/api/v1/usage", params={"from": "2020-01-01", "to": "2020-02-01"})
        assert empty.status_code == 200
        assert empty.json()["total"]["generations"] == 0
        backwards = admin.get("/api/v1/usage", params={"from": "2030-01-01", "to": "2020-01-01"})
        assert backwards.status_code == 200  # an empty period used nothing
        assert backwards.json()["data"] == []
        far = admin.get("/api/v1/usage", params={"to": "9999-12-31T23:59:59-23:59"})
        assert far.status_code == 200
        assert far.json()["total"] == by_default.json()["total"]
        bad = admin.get("/api/v1/usage", params={"group_by": "prompt"})
        assert bad.status_code == 400
        assert "group_by" in bad.json()["error"]


def test_keys_list_shows_usage_today_and_this_month(
    served: Served, replicate_double: ReplicateDouble
) -> None:
    workload(served, replicate_double)
    listed = cli(served.data_dir, "keys", "list")
    (alice,) = [line for line in listed.splitlines() if line.startswith("alice ")]
    assert alice.count("4 images $") == 2  # today and this month
    (bob,) = [line for line in listed.splitlines() if line.startswith("bob ")]
    assert bob.count("2 images $0.0000 (+2 unpriced)") == 2


def test_sdk_workload_is_counted_for_its_key(served: Served, openai_double: OpenAIDouble) -> None:
    import openai

    key = served.new_key("sdk")
    sdk = openai.OpenAI(base_url=f"{served.base_url}/v1", api_key=key, max_retries=0)
    sdk.images.generate(model="dall-e-3", prompt="a wren", n=1)
    with served.client(served.admin_key) as admin:
        usage = admin.get("/api/v1/usage").json()
    assert [(e["key"], e["images"], e["cost"]) for e in usage["data"]] == [
        ("sdk", 1, pytest.approx(PRICE_PER_IMAGE))
    ]


def test_times_are_iso_8601_not_numbers(served: Served) -> None:
    with served.client(served.admin_key) as admin:
        number = admin.get("/api/v1/usage", params={"from": "1700000000"})
    assert number.status_code == 400
    assert "from" in number.json()["error"]
    assert "expected an ISO 8601 date or time" in number.json()["error"]
