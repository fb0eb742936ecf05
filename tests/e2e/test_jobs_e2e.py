"""Jobs over real processes: ``imagegen serve`` and the Replicate double on loopback.

- ``kill -9`` with jobs in flight, then a restart on the same data: every job ends, and no job
  got a second prediction;
- a burst of several hundred requests against a rate-limited double: no client sees a 429 and
  the double never had to refuse a create;
- async create, server-sent events and signed webhooks, end to end.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from tests.api.receiver import WebhookReceiver
from tests.e2e.conftest import imagegen
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + "ZTJlLXdlYmhvb2stc2VjcmV0LWZvci1pbWFnZWdlbi10ZXN0"  # 36 bytes
BODY = {
    "model": "black-forest-labs/flux-schnell",
    "prompt": "a lighthouse in a storm",
    "num_images": 1,
    "width": 512,
    "height": 512,
}
ASYNC = {"Prefer": "respond-async"}


def test_kill_9_with_jobs_in_flight_then_restart_ends_every_job_without_a_second_prediction(
    tmp_path, double, control
):
    control.configure(duration=3.0)
    env = {
        "IMAGEGEN_REPLICATE_WAIT": "1",
        "IMAGEGEN_POLL_INTERVAL": "0.1",
        "IMAGEGEN_REQUEST_TIMEOUT": "60",
        "IMAGEGEN_REPLICATE_MAX_CONCURRENCY": "3",  # three run, three wait in the queue
    }
    first = imagegen(tmp_path, double, **env).start()
    try:
        with httpx.Client(base_url=first.base_url, timeout=10) as api:
            ids = [
                api.post("/api/v1/images/generate", json=BODY, headers=ASYNC).json()["id"]
                for _ in range(6)
            ]

            def running_with_predictions() -> list[dict[str, Any]]:
                jobs = [api.get(f"/api/v1/generations/{i}").json() for i in ids]
                started = [j for j in jobs if j["status"] == "running" and j["predictions"]]
                return jobs if len(started) == 3 else []

            jobs = wait_until(running_with_predictions, 15, "three predictions to be stored")
        assert control.stats()["creates"]["total"] == 3
        assert sorted(j["status"] for j in jobs) == ["queued"] * 3 + ["running"] * 3
    finally:
        first.kill()  # SIGKILL: no shutdown code runs

    with (
        imagegen(tmp_path, double, **env) as second,
        httpx.Client(base_url=second.base_url, timeout=10) as api,
    ):

        def all_ended() -> list[dict[str, Any]]:
            jobs = [api.get(f"/api/v1/generations/{i}").json() for i in ids]
            return jobs if all(j["completed_at"] for j in jobs) else []

        jobs = wait_until(all_ended, 45, "every job to end after the restart")
        assert [j["status"] for j in jobs] == ["succeeded"] * 6, jobs
        for job in jobs:
            assert len(job["predictions"]) == 1
            image = api.get(job["image_urls"][0])
            assert image.status_code == 200
            assert image.headers["content-type"].startswith("image/")
        stats = control.stats()
        assert stats["creates"]["total"] == 6  # one prediction per job, none created twice
        predicted = sorted(j["predictions"][0]["id"] for j in jobs)
        assert predicted == sorted(p["id"] for p in stats["predictions"])


async def test_a_burst_waits_in_imagegens_queue_instead_of_failing_upstream(
    tmp_path, double, control
):
    burst = 300
    control.configure(create_rate=1200, create_burst=10)  # 20 creates a second upstream
    env = {
        "IMAGEGEN_REPLICATE_WAIT": "5",
        "IMAGEGEN_REQUEST_TIMEOUT": "90",
        "IMAGEGEN_RETURN_PROVIDER_URLS": "true",
        "IMAGEGEN_REPLICATE_CREATES_PER_MINUTE": "1200",
        "IMAGEGEN_REPLICATE_CREATE_BURST": "5",
    }
    with imagegen(tmp_path, double, **env) as server:
        limits = httpx.Limits(max_connections=burst, max_keepalive_connections=burst)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120, limits=limits) as api:
            started = time.monotonic()
            responses = await asyncio.gather(
                *(api.post("/api/v1/images/generate", json=BODY) for _ in range(burst))
            )
            elapsed = time.monotonic() - started
    statuses = [response.status_code for response in responses]
    assert statuses.count(429) == 0
    assert statuses == [200] * burst, {s: statuses.count(s) for s in set(statuses)}
    stats = control.stats()
    assert stats["creates"]["total"] == burst
    assert stats["creates_rate_limited"] == 0  # the double never had to refuse a create
    assert stats["max_creates_per_60s"] <= 1200
    assert elapsed >= (burst - 10) / 20 * 0.9  # paced at the upstream's rate, not faster


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((kind, json.loads(line.removeprefix("data: "))))
    return events


def test_async_create_events_and_signed_webhooks_end_to_end(tmp_path, double, control):
    control.configure(duration=2.0)
    env = {
        "IMAGEGEN_REPLICATE_WAIT": "1",
        "IMAGEGEN_POLL_INTERVAL": "0.1",
        "IMAGEGEN_WEBHOOK_SECRET": SECRET,
        "IMAGEGEN_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "IMAGEGEN_WEBHOOK_RETRY_DELAYS": "[0.5, 0.5, 0.5]",
    }
    with (
        WebhookReceiver(SECRET) as receiver,
        imagegen(tmp_path, double, **env) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as api,
    ):
        body = {**BODY, "webhook": receiver.url, "webhook_events_filter": ["start", "completed"]}
        created = api.post("/api/v1/images/generate", json=body, headers=ASYNC)
        assert created.status_code == 202, created.text
        job = created.json()
        assert created.headers["location"] == job["urls"]["get"]
        with api.stream("GET", job["urls"]["events"]) as stream:
            events = sse_events(stream)
        kinds = [kind for kind, _ in events]
        assert kinds[0] == "state", kinds
        assert kinds[-2:] == ["state", "done"], kinds
        assert "progress" in kinds  # Replicate's tqdm logs, as fractions
        progress = [data["progress"] for kind, data in events if kind == "progress"]
        assert progress == sorted(progress)
        assert 0 < progress[-1] <= 1
        final = events[-1][1]
        assert final["status"] == "succeeded"
        assert final["image_urls"]

        start, completed = receiver.wait_for(2)
        assert start.verified
        assert completed.verified
        assert (start.json["status"], completed.json["status"]) == ("running", "succeeded")
        assert completed.json["image_urls"] == final["image_urls"]

        def delivered() -> list[dict[str, Any]]:
            attempts = api.get(job["urls"]["get"]).json()["webhook_attempts"]
            return attempts if len(attempts) == 2 else []

        attempts = wait_until(delivered, 10, "two recorded deliveries")
        assert [(a["event"], a["status_code"]) for a in attempts] == [
            ("start", 200),
            ("completed", 200),
        ]
        # Cancel: a second job, stopped while its prediction runs.
        second = api.post("/api/v1/images/generate", json=BODY, headers=ASYNC).json()
        wait_until(lambda: api.get(second["urls"]["get"]).json()["predictions"], 10, "a prediction")
        canceled = api.post(second["urls"]["cancel"]).json()
        assert canceled["status"] == "canceled"
    prediction = canceled["predictions"][0]["id"]
    upstream = {p["id"]: p["status"] for p in control.stats()["predictions"]}
    assert upstream[prediction] == "canceled"
