"""Webhooks: Standard Webhooks signatures, the address policy, the sender, the outbox worker."""

import ipaddress
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import standardwebhooks
from tests.jobs.conftest import REQUEST, runner_for

from imagegen.errors import InvalidRequest, InvalidTransition
from imagegen.jobs.records import Delivery, WebhookEvent, WebhookTarget
from imagegen.jobs.webhooks.address import AddressPolicy, AddressRefused, check_webhook_url
from imagegen.jobs.webhooks.client import AttemptResult, WebhookSender
from imagegen.jobs.webhooks.messages import WebhookMessages
from imagegen.jobs.webhooks.signing import (
    InvalidSignature,
    decode_secret,
    signature,
    signed_headers,
    verify,
)
from imagegen.jobs.webhooks.worker import RetrySchedule, WebhookWorker
from imagegen.models import JobStatus

# The reference vector of the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID, SPEC_TS, SPEC_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
KEY = decode_secret(SPEC_SECRET)
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


# --- signing ---


def test_signature_matches_the_standard_webhooks_reference_vector():
    assert signature(KEY, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_a_receiver_verifies_and_rejects_tampering_and_replays():
    headers = signed_headers(KEY, SPEC_ID, SPEC_TS, SPEC_BODY)
    verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TS + 10)
    with pytest.raises(InvalidSignature):
        verify(SPEC_SECRET, headers, SPEC_BODY + b" ", now=SPEC_TS)
    with pytest.raises(InvalidSignature):
        verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TS + 301)
    with pytest.raises(InvalidSignature):
        verify(SPEC_SECRET, {**headers, "webhook-id": "msg_other"}, SPEC_BODY, now=SPEC_TS)
    rotated = {**headers, "webhook-signature": f"v1,b3RoZXI= {headers['webhook-signature']}"}
    verify(SPEC_SECRET, rotated, SPEC_BODY, now=SPEC_TS)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
        ("whsec_not base64!", "base64"),
        ("whsec_c2hvcnQ=", "24 to 64"),
    ],
)
def test_bad_secrets_are_refused_saying_why(secret, problem):
    with pytest.raises(ValueError, match=problem):
        decode_secret(secret)


def test_settings_validate_the_secret_and_networks():
    from pydantic import ValidationError

    from imagegen.config import Settings

    settings = Settings(webhook_secret=SPEC_SECRET, webhook_allowed_networks=["10.0.0.0/8"])
    assert settings.webhook_allowed_networks == [ipaddress.ip_network("10.0.0.0/8")]
    with pytest.raises(ValidationError, match="whsec_"):
        Settings(webhook_secret="secret")
    with pytest.raises(ValidationError):
        Settings(webhook_allowed_networks=["not a network"])


# --- where webhooks may go ---


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "https:///nohost",
        "https://user:pw@example.com/hook",
        "https://127.0.0.1/hook",
        "http://[::1]:8080/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "https://example.com/" + "x" * 2100,
    ],
)
def test_unusable_webhook_urls_are_a_400_naming_the_field(url):
    with pytest.raises(InvalidRequest) as refused:
        check_webhook_url(url)
    assert refused.value.field == "webhook"


def test_allowed_networks_let_private_receivers_through():
    assert check_webhook_url("http://127.0.0.1:9000/hook", LOOPBACK)
    assert check_webhook_url("https://hooks.example.com/x?token=1")  # names resolve at delivery


async def test_every_resolved_address_must_be_permitted():
    async def resolver(host, port):
        return {"public.test": ["93.184.216.34"], "mixed.test": ["93.184.216.34", "10.0.0.7"]}[host]

    policy = AddressPolicy((), resolver)
    assert await policy.address_for("public.test", 443) == "93.184.216.34"
    with pytest.raises(AddressRefused, match=r"10\.0\.0\.7"):
        await policy.address_for("mixed.test", 443)
    for address in ("127.0.0.1", "::1", "169.254.169.254", "fe80::1", "::ffff:10.0.0.1"):
        with pytest.raises(AddressRefused):
            await policy.address_for(address, 80)
    assert await AddressPolicy(tuple(LOOPBACK)).address_for("127.0.0.1", 80) == "127.0.0.1"


# --- the sender ---


def delivery(url="https://hooks.example.com/in", attempts=0, created_at=None) -> Delivery:
    return Delivery(
        id="msg_1",
        generation_id="gen_1",
        event=WebhookEvent.COMPLETED,
        url=url,
        body='{"id": "gen_1", "status": "succeeded"}',
        attempts=attempts,
        created_at=created_at or datetime.now(UTC),
    )


def sender_with(handler, *, key=KEY, now=time.time) -> tuple[WebhookSender, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    async def resolver(host, port):
        return ["93.184.216.34"]

    http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    policy = AddressPolicy((), resolver)
    return WebhookSender(http, key=key, policy=policy, timeout=5, now=now), seen


async def test_a_delivery_is_signed_pinned_to_the_checked_address_and_keeps_its_host():
    sender, seen = sender_with(lambda r: httpx.Response(204))
    result = await sender.send(delivery())
    assert result == AttemptResult(204, None, True)
    request = seen[0]
    assert request.url.host == "93.184.216.34"
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    headers = {k.lower(): v for k, v in request.headers.items()}
    verify(SPEC_SECRET, headers, request.content, now=time.time())
    assert headers["webhook-id"] == "msg_1"
    assert json.loads(request.content)["status"] == "succeeded"


async def test_the_official_standardwebhooks_library_verifies_a_delivery_and_signs_alike():
    sender, seen = sender_with(lambda r: httpx.Response(204))
    await sender.send(delivery())
    request = seen[0]
    receiver = standardwebhooks.Webhook(SPEC_SECRET)
    assert receiver.verify(request.content, dict(request.headers)) == json.loads(request.content)
    tampered = request.content.replace(b"succeeded", b"failed")
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        receiver.verify(tampered, dict(request.headers))
    # And what the library signs, imagegen's receiver-side check accepts (the spec's vector too).
    when = datetime.fromtimestamp(SPEC_TS, UTC)
    assert receiver.sign(SPEC_ID, when, SPEC_BODY.decode()) == SPEC_SIGNATURE
    theirs = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(SPEC_TS),
        "webhook-signature": receiver.sign("msg_2", when, SPEC_BODY.decode()),
    }
    verify(SPEC_SECRET, theirs, SPEC_BODY, now=SPEC_TS)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(301, headers={"location": "http://10.0.0.1/"}), (301, False, False)),
        (httpx.Response(307, headers={"location": "/elsewhere"}), (307, False, False)),
        (httpx.Response(500), (500, False, False)),
        (httpx.Response(429), (429, False, False)),
        (httpx.Response(410), (410, False, True)),
    ],
)
async def test_redirects_and_errors_are_failed_attempts(response, expected):
    sender, seen = sender_with(lambda r: response)
    result = await sender.send(delivery())
    assert (result.status_code, result.delivered, result.permanent) == expected
    assert len(seen) == 1  # a redirect is never followed
    if 300 <= expected[0] < 400:
        assert "redirect" in result.error


async def test_connection_errors_and_refused_addresses_make_no_status():
    def down(request):
        raise httpx.ConnectError("refused", request=request)

    sender, _ = sender_with(down)
    result = await sender.send(delivery())
    assert (result.status_code, result.delivered, result.permanent) == (None, False, False)
    assert "ConnectError" in result.error

    sender, seen = sender_with(lambda r: httpx.Response(200))
    refused = await sender.send(delivery(url="http://127.0.0.1:9/hook"))
    assert (refused.delivered, refused.permanent, seen) == (False, True, [])
    unsigned, _ = sender_with(lambda r: httpx.Response(200), key=None)
    assert (await unsigned.send(delivery())).error == "IMAGEGEN_WEBHOOK_SECRET is not set"


# --- the schedule ---


def test_retries_back_off_and_stop_when_the_schedule_or_max_age_runs_out():
    schedule = RetrySchedule((5, 30, 120), max_age=100, jitter=0)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert schedule.retry_at(delivery(created_at=now), now, lambda: 0.5) == now + timedelta(
        seconds=5
    )
    second = delivery(attempts=1, created_at=now)
    assert schedule.retry_at(second, now, lambda: 0.5) == now + timedelta(seconds=30)
    assert schedule.retry_at(delivery(attempts=2, created_at=now), now, lambda: 0.5) is None
    assert schedule.retry_at(delivery(attempts=3, created_at=now), now, lambda: 0.5) is None


# --- the outbox, through the runner and the real store ---


async def test_transitions_write_the_messages_the_job_asked_for(store, gated):
    gated.release.set()
    runner = runner_for(store, gated)
    events = (WebhookEvent.START, WebhookEvent.COMPLETED)
    job = await runner.submit(REQUEST, webhook=WebhookTarget("https://h.example/in", events))
    assert job.status is JobStatus.QUEUED  # its start is written with its message
    completed = WebhookTarget("https://h.example/in", (WebhookEvent.COMPLETED,))
    ends_only = await runner.submit(REQUEST, webhook=completed)
    assert ends_only.status is JobStatus.RUNNING  # written running: no start message owed
    quiet = await runner.submit(REQUEST)
    for each in (job, ends_only, quiet):
        await runner.wait(each.id)
    messages = await store.outbox.deliveries(job.id)
    assert [(m.event, status) for m, status in messages] == [
        (WebhookEvent.START, "pending"),
        (WebhookEvent.COMPLETED, "pending"),
    ]
    assert json.loads(messages[1][0].body)["status"] == "succeeded"
    ended = await store.outbox.deliveries(ends_only.id)
    assert [(m.event, status) for m, status in ended] == [(WebhookEvent.COMPLETED, "pending")]
    assert await store.outbox.deliveries(quiet.id) == []


async def test_a_lost_transition_writes_no_message(store):
    job = await store.create(
        REQUEST, provider="x", webhook_url="https://h/", webhook_events=["completed"]
    )
    outbox = WebhookMessages().outbox()
    await store.mark_canceled(job.id, reason="first", outbox=outbox)
    with pytest.raises(InvalidTransition):
        await store.mark_failed(job.id, error="second", error_code="x", outbox=outbox)
    assert len(await store.outbox.deliveries(job.id)) == 1


class ScriptedSender:
    def __init__(self, *results: AttemptResult) -> None:
        self.results = list(results)
        self.sent: list[Delivery] = []

    async def send(self, message: Delivery) -> AttemptResult:
        self.sent.append(message)
        return self.results.pop(0)


async def test_the_worker_retries_records_each_attempt_and_survives_a_restart(store, gated):
    gated.release.set()
    runner = runner_for(store, gated)
    job = await runner.submit(REQUEST, webhook=WebhookTarget("https://h.example/in"))
    await runner.wait(job.id)
    schedule = RetrySchedule((0.01, 0.01), max_age=60, jitter=0)
    down = AttemptResult(None, "ConnectError: could not deliver", False)
    first = WebhookWorker(
        store.outbox, ScriptedSender(down), schedule, clock=lambda: datetime.now(UTC)
    )
    assert await first.deliver_due() == 1
    # A new worker (a restarted process) picks up the retry where the first left it.
    sender = ScriptedSender(AttemptResult(503, "HTTP 503", False), AttemptResult(200, None, True))
    second = WebhookWorker(store.outbox, sender, schedule, clock=lambda: datetime.now(UTC))
    for _ in range(2):
        await _until_due(store)
        assert await second.deliver_due() == 1
    assert await second.deliver_due() == 0
    attempts = (await store.outbox.attempts([job.id]))[job.id]
    assert [(a.status_code, a.delivered) for a in attempts] == [
        (None, False),
        (503, False),
        (200, True),
    ]
    assert {a.delivery_id for a in attempts} == {sender.sent[0].id}  # one webhook-id throughout
    assert [status for _, status in await store.outbox.deliveries(job.id)] == ["delivered"]


async def test_the_worker_gives_up_after_the_schedule(store, gated):
    gated.release.set()
    runner = runner_for(store, gated)
    job = await runner.submit(REQUEST, webhook=WebhookTarget("https://h.example/in"))
    await runner.wait(job.id)
    failing = ScriptedSender(*[AttemptResult(500, "HTTP 500", False)] * 2)
    schedule = RetrySchedule((0.01,), max_age=60, jitter=0)
    worker = WebhookWorker(store.outbox, failing, schedule, clock=lambda: datetime.now(UTC))
    await worker.deliver_due()
    await _until_due(store)
    await worker.deliver_due()
    assert [status for _, status in await store.outbox.deliveries(job.id)] == ["failed"]
    assert await store.outbox.next_due() is None
    assert len(failing.sent) == 2


async def _until_due(store):
    import asyncio

    due = await store.outbox.next_due()
    assert due is not None
    await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.005)


async def test_a_claimed_message_is_not_sent_twice_by_two_workers(store):
    job = await store.create(
        REQUEST, provider="x", webhook_url="https://h/", webhook_events=["start"]
    )
    await store.mark_running(job.id, outbox=WebhookMessages().outbox())
    clock = lambda: datetime.now(UTC)  # noqa: E731
    senders = [ScriptedSender(AttemptResult(200, None, True)) for _ in range(2)]
    workers = [WebhookWorker(store.outbox, s, RetrySchedule(), clock=clock) for s in senders]
    import asyncio

    counts = await asyncio.gather(*(worker.deliver_due() for worker in workers))
    assert sorted(counts) == [0, 1]
    assert (await store.get(job.id)).status is JobStatus.RUNNING


def test_the_readmes_verification_snippet_accepts_our_signatures_and_rejects_tampering():
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("Verifying a delivery", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)
    now = int(time.time())
    headers = signed_headers(KEY, "msg_readme", now, SPEC_BODY)
    assert namespace["verify"](SPEC_SECRET, headers, SPEC_BODY)
    assert not namespace["verify"](SPEC_SECRET, headers, SPEC_BODY + b"!")
    stale = signed_headers(KEY, "msg_readme", now - 3600, SPEC_BODY)
    assert not namespace["verify"](SPEC_SECRET, stale, SPEC_BODY)
