"""``GET /metrics`` after a known workload shows exactly the counts it must produce; labels stay
bounded (no key, prompt or id); admin keys only. Every response carries ``Server-Timing``."""

from __future__ import annotations

import re

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tests.fakes.openai_double import OpenAIDouble
from tests.fakes.replicate_double import ReplicateDouble
from tests.keys.conftest import Served

SEED = "/api/v1/images/generate"
OPENAI = "/v1/images/generations"
PROMPT = "a very particular pelican"
FLUX = {"model": "flux", "prompt": PROMPT, "num_images": 1, "width": 512, "height": 512}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_a_scrape_after_a_known_workload(
    served: Served, replicate_double: ReplicateDouble, openai_double: OpenAIDouble
) -> None:
    key = served.new_key("app")
    with served.client(key) as api:
        ids = [api.post(SEED, json=FLUX).json()["id"] for _ in range(2)]
        ids.append(api.post(OPENAI, json={"model": "dall-e-3", "prompt": PROMPT}).json()["id"])
        replicate_double.script("fail_prediction", error="the model crashed")
        failed = api.post(SEED, json=FLUX)
        assert failed.status_code == 502
        assert api.get("/no/such/route").status_code == 404
        assert api.get("/metrics").status_code == 403  # not an admin key
    with served.client(served.admin_key) as admin:
        stored = [admin.get(f"/api/v1/generations/{gid}").json() for gid in ids]
        response = admin.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    found = samples(text)

    generations = "imagegen_generations_total"
    assert value(found, generations, model="flux", provider="replicate", outcome="succeeded") == 2
    assert value(found, generations, model="flux", provider="replicate", outcome="failed") == 1
    assert value(found, generations, model="dall-e-3", provider="openai", outcome="succeeded") == 1
    requests = "imagegen_http_requests_total"
    assert value(found, requests, method="POST", route=SEED, status="200") == 2
    assert value(found, requests, method="POST", route=SEED, status="502") == 1
    assert value(found, requests, method="POST", route=OPENAI, status="200") == 1
    assert value(found, requests, method="GET", route="unmatched", status="404") == 1
    assert value(found, requests, method="GET", route="/metrics", status="403") == 1
    latency = "imagegen_http_request_duration_seconds_count"
    assert value(found, latency, method="POST", route=SEED) == 3
    creates = replicate_double.stats()["creates"]["total"]
    assert creates == 3
    assert value(found, "imagegen_upstream_creates_total", provider="replicate") == creates
    assert value(found, "imagegen_upstream_creates_total", provider="openai") == 1
    assert openai_double.stats()["total_calls"] == 1
    errors = "imagegen_upstream_errors_total"
    assert value(found, errors, provider="replicate", code="prediction_failed") == 1
    assert value(found, "imagegen_generation_upstream_seconds_count", provider="replicate") == 3
    assert value(found, "imagegen_generation_upstream_seconds_count", provider="openai") == 1
    assert value(found, "imagegen_generation_queue_seconds_count", provider="replicate") == 3
    assert value(found, "imagegen_generation_store_seconds_count", provider="replicate") == 2
    assert value(found, "imagegen_generations_running", provider="replicate") == 0
    assert value(found, "imagegen_generations_queued", provider="replicate") == 0
    images = [image for generation in stored for image in generation["images"]]
    assert value(found, "imagegen_images_stored_total") == len(images) == 3
    # Bytes: the stored files' sizes, read back.
    sizes = sum(len(httpx.get(image["url"]).content) for image in images)
    assert value(found, "imagegen_image_bytes_stored_total") == sizes

    for secret in (key, served.admin_key, PROMPT, *ids):
        assert secret not in text
    assert not re.search(r"gen_[0-9a-z]{26}", text)


def test_metrics_need_an_admin_key_unless_opened(start) -> None:  # type: ignore[no-untyped-def]
    served: Served = start()
    with served.client(None) as anyone:
        assert anyone.get("/metrics").status_code == 401
    opened: Served = start(metrics_auth="none")
    with opened.client(None) as anyone:
        assert anyone.get("/metrics").status_code == 200


def test_metrics_on_their_own_port(start) -> None:  # type: ignore[no-untyped-def]
    from tests.support.imagegen_process import free_port

    port = free_port()
    served: Served = start(metrics_port=port)
    with served.client(served.admin_key) as admin:
        assert admin.get("/metrics").status_code == 404
        assert admin.post(SEED, json=FLUX).status_code == 200
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert scraped.status_code == 200
    found = samples(scraped.text)
    assert (
        value(found, "imagegen_http_requests_total", method="POST", route=SEED, status="200") == 1
    )


def test_every_response_carries_server_timing(served: Served) -> None:
    timing = re.compile(r"^imagegen;dur=(\d+\.\d), upstream;dur=(\d+\.\d)$")
    with served.client(served.admin_key) as admin:
        created = admin.post(SEED, json=FLUX)
        listed = admin.get("/api/v1/generations")
        missing = admin.get("/api/v1/generations/gen_nope")
    with served.client(None) as anyone:
        refused = anyone.get("/api/v1/generations")
        health = anyone.get("/healthz")
    for response in (created, listed, missing, refused, health):
        assert timing.match(response.headers["server-timing"]), response.headers
    own, upstream = map(float, timing.match(created.headers["server-timing"]).groups())  # type: ignore[union-attr]
    assert upstream > 0  # the sync create waited on Replicate
    assert own >= 0
    assert float(timing.match(listed.headers["server-timing"]).group(2)) == 0  # type: ignore[union-attr]


def test_webhook_deliveries_and_failures_are_counted(start) -> None:  # type: ignore[no-untyped-def]
    import time

    from tests.api.conftest import WEBHOOK_SECRET
    from tests.api.receiver import WebhookReceiver

    served: Served = start(
        webhook_secret=WEBHOOK_SECRET,
        webhook_allowed_networks=["127.0.0.0/8"],
        webhook_retry_delays=[0.3, 0.3, 0.3],
    )
    with WebhookReceiver(WEBHOOK_SECRET) as receiver, served.client(served.admin_key) as admin:
        receiver.status = 503
        assert admin.post(SEED, json={**FLUX, "webhook": receiver.url}).status_code == 200
        receiver.wait_for(1)
        receiver.status = 200
        receiver.wait_for(2)
        deadline = time.monotonic() + 10
        while True:
            found = samples(admin.get("/metrics").text)
            delivered = value(found, "imagegen_webhook_deliveries_total", outcome="delivered")
            if delivered or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert delivered == 1
    assert value(found, "imagegen_webhook_deliveries_total", outcome="failed") == 1


def test_last_used_is_recorded_when_the_server_stops(served: Served) -> None:
    from tests.keys.conftest import cli

    key = served.new_key("used")
    with served.client(key) as api:
        assert api.get("/api/v1/generations").status_code == 200
    served.server.stop()  # the last batch of last-used times is written on the way out
    (line,) = [row for row in cli(served.data_dir, "keys", "list").splitlines() if "used " in row]
    # Created and last used (the admin key was used too): two times, whatever the key's prefix.
    assert len(re.findall(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}Z", line)) == 2, line
