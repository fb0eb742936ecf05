"""Jobs over HTTP: async create (202), GET, cancel, server-sent events, webhooks, limits."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.api.conftest import WEBHOOK_SECRET, FakeWorld
from tests.api.receiver import WebhookReceiver
from tests.jobs.fakes import GatedProvider

from imagegen.api.app import create_app

URL = "/api/v1/images/generate"
GOOD = {"model": "owner/model", "prompt": "a cat", "num_images": 2, "width": 512, "height": 512}
ASYNC = {"Prefer": "respond-async"}
FAST_RETRIES = [0.3, 0.3, 0.3, 0.3, 0.3, 0.3]


class Jobs:
    """A running app over a gated provider: ``release()`` lets predictions finish."""

    def __init__(self, world: FakeWorld, client: TestClient) -> None:
        self.world = world
        self.client = client
        self.provider: GatedProvider = world.provider  # type: ignore[assignment]

    def release(self) -> None:
        self.client.portal.call(self.provider.release.set)  # type: ignore[union-attr]

    def started(self) -> None:
        deadline = time.monotonic() + 5
        while not self.provider.started.is_set():
            assert time.monotonic() < deadline
            time.sleep(0.005)

    def get(self, generation_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/generations/{generation_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def until(self, generation_id: str, status: str, timeout: float = 5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (job := self.get(generation_id))["status"] != status:
            assert time.monotonic() < deadline, job
            time.sleep(0.01)
        return job


def running_jobs(tmp_path: Path, **settings: Any) -> Iterator[Jobs]:
    world = FakeWorld(tmp_path, **settings)
    world.provider = GatedProvider()  # type: ignore[assignment]
    with TestClient(create_app(world.settings, services=world.services)) as client:
        yield Jobs(world, client)


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Jobs]:
    yield from running_jobs(
        tmp_path,
        webhook_secret=WEBHOOK_SECRET,
        webhook_allowed_networks=["127.0.0.0/8"],
        webhook_retry_delays=FAST_RETRIES,
        sse_heartbeat=0.2,
    )


# --- async create, GET, cancel ---


def test_async_create_answers_202_with_the_job_and_its_urls(jobs):
    response = jobs.client.post(URL, json=GOOD, headers=ASYNC)
    assert response.status_code == 202, response.text
    body = response.json()
    job_url = f"http://testserver/api/v1/generations/{body['id']}"
    assert response.headers["location"] == job_url
    assert response.headers["preference-applied"] == "respond-async"
    assert body["status"] in ("queued", "running")
    assert body["urls"] == {
        "get": job_url,
        "cancel": f"{job_url}/cancel",
        "events": f"{job_url}/events",
    }
    jobs.started()
    running = jobs.get(body["id"])
    assert (running["status"], running["progress"]) == ("running", 0.5)
    assert [p["id"] for p in running["predictions"]] == ["p1"]
    jobs.release()
    done = jobs.until(body["id"], "succeeded")
    assert done["progress"] == 1.0
    assert len(done["image_urls"]) == 2
    assert done["completed_at"] is not None


def test_an_async_retry_with_the_same_idempotency_key_returns_the_same_job(jobs):
    headers = {**ASYNC, "Idempotency-Key": "k-1"}
    first = jobs.client.post(URL, json=GOOD, headers=headers).json()
    again = jobs.client.post(URL, json=GOOD, headers=headers)
    assert again.status_code == 202
    assert again.json()["id"] == first["id"]
    assert len(jobs.provider.created) <= 1


def test_cancel_a_running_job_then_cancel_again(jobs):
    job = jobs.client.post(URL, json=GOOD, headers=ASYNC).json()
    jobs.started()
    canceled = jobs.client.post(job["urls"]["cancel"])
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert jobs.provider.canceled == ["p1"]
    again = jobs.client.post(job["urls"]["cancel"])
    assert (again.status_code, again.json()["status"]) == (200, "canceled")
    assert jobs.client.post("/api/v1/generations/gen_missing/cancel").status_code == 404


def test_cancel_a_finished_job_returns_it_unchanged(jobs):
    jobs.release()
    job = jobs.client.post(URL, json=GOOD, headers=ASYNC).json()
    jobs.until(job["id"], "succeeded")
    response = jobs.client.post(job["urls"]["cancel"])
    assert (response.status_code, response.json()["status"]) == (200, "succeeded")


def test_a_sync_request_for_a_canceled_job_is_409(jobs):
    import threading

    answers: list[Any] = []
    waiter = threading.Thread(target=lambda: answers.append(jobs.client.post(URL, json=GOOD)))
    waiter.start()
    jobs.started()
    job_id = jobs.client.get("/api/v1/generations").json()["data"][0]["id"]
    jobs.client.post(f"/api/v1/generations/{job_id}/cancel")
    waiter.join(5)
    assert answers[0].status_code == 409
    assert "canceled" in answers[0].json()["error"]


# --- server-sent events ---


def events_of(stream: str) -> list[tuple[str, Any]]:
    found = []
    for block in stream.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        if "event" in fields:
            found.append((fields["event"], json.loads(fields["data"])))
    return found


def test_events_from_the_start_to_done(tmp_path):
    for jobs in running_jobs(tmp_path, replicate_max_concurrency=1, sse_heartbeat=0.2):
        jobs.provider.name = "replicate"  # one slot: the second job waits, queued
        blocker = jobs.client.post(URL, json=GOOD, headers=ASYNC).json()
        jobs.started()
        job = jobs.client.post(URL, json=GOOD, headers=ASYNC).json()
        with jobs.client.stream("GET", job["urls"]["events"]) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            # The headers go out before the stream reads the job's current state: release
            # only once that first event is in, or it may already say running (or later).
            chunks = response.iter_text()
            text = ""
            while "\n\n" not in text:
                text += next(chunks)
            jobs.release()
            text += "".join(chunks)
        events = events_of(text)
        assert [(kind, data.get("status", data.get("progress"))) for kind, data in events] == [
            ("state", "queued"),
            ("state", "running"),
            ("progress", 0.5),
            ("state", "succeeded"),
            ("done", "succeeded"),
        ]
        assert events[-1][1]["image_urls"]
        assert "id: 1\n" in text
        jobs.until(blocker["id"], "succeeded")


def test_events_joined_late_start_with_the_current_state(jobs):
    job = jobs.client.post(URL, json=GOOD, headers=ASYNC).json()
    jobs.started()
    with jobs.client.stream("GET", job["urls"]["events"]) as response:
        chunks = response.iter_text()
        first = next(chunks)
        assert events_of(first)[0][1]["status"] == "running"
        jobs.release()
        text = first + "".join(chunks)
    kinds = [kind for kind, _ in events_of(text)]
    assert kinds[0] == "state"
    assert kinds[-2:] == ["state", "done"]
    finished = jobs.client.get(job["urls"]["events"]).text  # joined after the end
    assert [kind for kind, _ in events_of(finished)] == ["state", "done"]
    assert jobs.client.get("/api/v1/generations/gen_missing/events").status_code == 404


def test_events_send_heartbeats_while_nothing_happens(jobs):
    job = jobs.client.post(URL, json=GOOD, headers=ASYNC).json()
    jobs.started()
    with jobs.client.stream("GET", job["urls"]["events"]) as response:
        seen = ""
        for chunk in response.iter_text():
            seen += chunk
            if ": keep-alive" in seen:
                break
    jobs.release()
    assert ": keep-alive" in seen


# --- webhooks ---


def test_webhooks_are_signed_and_carry_the_job(jobs):
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        body = {**GOOD, "webhook": receiver.url, "webhook_events_filter": ["start", "completed"]}
        job = jobs.client.post(URL, json=body, headers=ASYNC).json()
        assert (job["webhook"], job["webhook_events_filter"]) == (
            receiver.url,
            ["start", "completed"],
        )
        jobs.started()
        jobs.release()
        start, completed = receiver.wait_for(2)
    assert all(message.verified for message in (start, completed))
    assert (start.json["status"], completed.json["status"]) == ("running", "succeeded")
    assert completed.json["id"] == job["id"]
    assert completed.json["image_urls"][0].startswith("http://testserver/images/")
    assert start.headers["webhook-id"] != completed.headers["webhook-id"]
    attempts = _attempts_until(jobs, job["id"], 2)
    assert [(a["event"], a["status_code"], a["delivered"]) for a in attempts] == [
        ("start", 200, True),
        ("completed", 200, True),
    ]


def test_a_receiver_that_is_down_gets_the_webhook_when_it_comes_back(jobs):
    receiver = WebhookReceiver(WEBHOOK_SECRET)  # nothing listens on its port yet
    jobs.release()
    job = jobs.client.post(URL, json={**GOOD, "webhook": receiver.url}, headers=ASYNC).json()
    jobs.until(job["id"], "succeeded")  # the generation did not wait for the receiver
    failed = _attempts_until(jobs, job["id"], 1)
    assert failed[0]["status_code"] is None
    assert "ConnectError" in failed[0]["error"]
    with receiver:
        receiver.status = 503  # up, but not ready
        receiver.wait_for(1)
        receiver.status = 200
        receiver.wait_for(2)
        attempts = _attempts_until(jobs, job["id"], 3)
    assert [a["delivered"] for a in attempts][-1] is True
    assert 503 in [a["status_code"] for a in attempts]
    assert len({m.headers["webhook-id"] for m in receiver.received}) == 1  # the same message
    assert all(m.verified for m in receiver.received)


def test_a_redirecting_receiver_is_not_followed_and_the_attempt_says_so(jobs):
    with WebhookReceiver(WEBHOOK_SECRET) as target, WebhookReceiver(WEBHOOK_SECRET) as receiver:
        receiver.redirect_to = target.url
        jobs.release()
        job = jobs.client.post(URL, json={**GOOD, "webhook": receiver.url}, headers=ASYNC).json()
        attempts = _attempts_until(jobs, job["id"], 2)
    assert [(a["status_code"], a["delivered"]) for a in attempts[:2]] == [(307, False)] * 2
    assert "redirect" in attempts[0]["error"]
    assert "not followed" in attempts[0]["error"]
    assert target.received == []


def _attempts_until(jobs: Jobs, generation_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(attempts := jobs.get(generation_id)["webhook_attempts"]) < count:
        assert time.monotonic() < deadline, attempts
        time.sleep(0.02)
    return attempts


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"webhook": "http://10.0.0.1/hook"}, 400, "webhook"),
        ({"webhook": "ftp://example.com/x"}, 400, "webhook"),
        ({"webhook_events_filter": ["completed"]}, 400, "webhook_events_filter"),
        ({"webhook": "https://example.com/x", "webhook_events_filter": ["logs"]}, 400, None),
        ({"webhook": "https://example.com/x", "webhook_events_filter": []}, 400, None),
    ],
)
def test_bad_webhooks_are_refused_before_anything_runs(jobs, fields, status, field):
    response = jobs.client.post(URL, json={**GOOD, **fields})
    assert response.status_code == status, response.text
    if field:
        assert response.json()["error"].startswith(field)
    assert jobs.provider.created == []


def test_without_a_secret_webhooks_are_refused(client, world):
    response = client.post(URL, json={**GOOD, "webhook": "https://example.com/x"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("webhook:")
    assert "IMAGEGEN_WEBHOOK_SECRET" in response.json()["error"]


# --- limits ---


def test_a_full_queue_is_503_with_retry_after(tmp_path):
    for jobs in running_jobs(tmp_path, replicate_max_concurrency=1, max_queue=1):
        jobs.provider.name = "replicate"
        jobs.client.post(URL, json=GOOD, headers=ASYNC)
        jobs.started()
        assert jobs.client.post(URL, json=GOOD, headers=ASYNC).status_code == 202
        full = jobs.client.post(URL, json=GOOD, headers=ASYNC)
        assert full.status_code == 503
        assert int(full.headers["retry-after"]) >= 1
        assert "queue is full" in full.json()["error"]
        jobs.release()


def test_a_locked_database_is_503_with_retry_after_not_a_500(tmp_path, monkeypatch):
    monkeypatch.setattr("imagegen.db.engine.SQLITE_BUSY_TIMEOUT_MS", 50)
    for jobs in running_jobs(tmp_path):
        other = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)  # another writer
        other.execute("BEGIN IMMEDIATE")
        try:
            seed = jobs.client.post(URL, json=GOOD, headers=ASYNC)
            openai = jobs.client.post("/v1/images/generations", json={"prompt": "a cat"})
        finally:
            other.rollback()
            other.close()
        assert (seed.status_code, seed.headers["retry-after"]) == (503, "1"), seed.text
        assert "database is locked" in seed.json()["error"]
        assert (openai.status_code, openai.headers["retry-after"]) == (503, "1"), openai.text
        assert openai.json()["error"]["type"] == "server_error"
        assert openai.json()["error"]["code"] == "store_busy"
        assert jobs.client.post(URL, json=GOOD, headers=ASYNC).status_code == 202


def test_a_sync_request_stuck_in_the_queue_past_its_deadline_is_504(tmp_path):
    for jobs in running_jobs(tmp_path, replicate_max_concurrency=1, request_timeout=0.3):
        jobs.provider.name = "replicate"
        jobs.client.post(URL, json=GOOD, headers=ASYNC)
        jobs.started()
        response = jobs.client.post(URL, json=GOOD)
        assert response.status_code == 504, response.text
        assert "queue" in response.json()["error"]
        jobs.release()
