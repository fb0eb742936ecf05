"""The Replicate client, its retry wrapper and error translation, over httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from imagegen.errors import UpstreamHTTPError, UpstreamRateLimited, UpstreamUnavailable
from imagegen.providers.replicate.client import (
    ReplicateClient,
    cancel_after_header,
    prefer_header,
)
from imagegen.providers.replicate.errors import format_error, no_token_error, retry_after_of
from imagegen.providers.replicate.prediction import Prediction, PredictionStatus
from imagegen.providers.replicate.refs import ModelRef
from imagegen.providers.replicate.retry import Retrier, RetryPolicy
from imagegen.upstream import HttpxUpstream

VERSION = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
BASE = "https://api.replicate.test"
Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """A clock that only moves when something sleeps on it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def prediction_json(pid: str = "p1", status: str = "starting", **fields: Any) -> dict[str, Any]:
    return {
        "id": pid,
        "model": "o/n",
        "version": "hidden",
        "input": {},
        "logs": "",
        "output": None,
        "error": None,
        "status": status,
        "created_at": "2024-04-22T11:15:15.329Z",
        "urls": {
            "get": f"{BASE}/v1/predictions/{pid}",
            "cancel": f"{BASE}/v1/predictions/{pid}/cancel",
        },
        **fields,
    }


def problem(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = (
        body if isinstance(body, str | bytes) else json.dumps(body) if body is not None else b""
    )
    all_headers = {"Content-Type": "application/problem+json", **(headers or {})}
    return httpx.Response(status, content=content, headers=all_headers)


class Recorder:
    """Serves scripted replies in order and keeps every request."""

    def __init__(self, *replies: httpx.Response | Exception) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


def make_client(handler: Handler, clock: FakeClock, *, attempts: int = 5) -> ReplicateClient:
    http = HttpxUpstream(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    policy = RetryPolicy(max_attempts=attempts, base_delay=0.5, max_delay=8.0, jitter=0.0)
    retrier = Retrier(policy, sleep=clock.sleep, clock=clock)
    return ReplicateClient(
        http, api_token="r8_test", base_url=BASE + "/", retrier=retrier, clock=clock
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --- exact error messages --------------------------------------------------------------------

ERRORS = [
    (
        401,
        {
            "title": "Unauthenticated",
            "detail": "You did not pass a valid authentication token",
            "status": 401,
        },
        "ReplicateError Details:\ntitle: Unauthenticated\nstatus: 401\n"
        "detail: You did not pass a valid authentication token",
    ),
    (
        402,
        {"title": "Insufficient credit", "detail": "No credit.", "status": 402},
        "ReplicateError Details:\ntitle: Insufficient credit\nstatus: 402\ndetail: No credit.",
    ),
    (
        404,
        {"detail": "The requested resource could not be found.", "status": 404},
        "ReplicateError Details:\nstatus: 404\ndetail: The requested resource could not be found.",
    ),
    (
        422,
        {
            "title": "Invalid version or not permitted",
            "detail": "The specified version does not exist (or perhaps you don't have "
            "permission to use it?)",
            "status": 422,
        },
        "ReplicateError Details:\ntitle: Invalid version or not permitted\nstatus: 422\n"
        "detail: The specified version does not exist (or perhaps you don't have "
        "permission to use it?)",
    ),
    (
        422,
        {
            "detail": "- input.num_outputs: Must be less than or equal to 4\n",
            "status": 422,
            "title": "Input validation failed",
            "invalid_fields": [{"type": "number_lte", "field": "input.num_outputs"}],
        },
        "ReplicateError Details:\ntitle: Input validation failed\nstatus: 422\n"
        "detail: - input.num_outputs: Must be less than or equal to 4\n",
    ),
    (
        400,
        {"type": "about:blank", "title": "Bad", "status": 999, "detail": "d", "instance": "/x"},
        "ReplicateError Details:\ntype: about:blank\ntitle: Bad\nstatus: 400\n"
        "detail: d\ninstance: /x",
    ),
    (500, None, "ReplicateError Details:\nstatus: 500"),
    (502, "<html><body>Bad gateway</body></html>", "ReplicateError Details:\nstatus: 502"),
    (503, [1, 2], "ReplicateError Details:\nstatus: 503"),
]


@pytest.mark.parametrize(("status", "body", "message"), ERRORS)
async def test_error_replies_read_exactly_like_the_official_client(
    clock: FakeClock, status: int, body: Any, message: str
) -> None:
    client = make_client(Recorder(problem(status, body)), clock, attempts=1)
    with pytest.raises(UpstreamHTTPError) as caught:
        await client.get("p1", deadline=clock.now + 60)
    assert caught.value.message == message
    assert str(caught.value) == message
    assert caught.value.status == status
    assert caught.value.provider == "replicate"
    assert type(caught.value) is UpstreamHTTPError


def test_the_missing_token_error_is_the_seed_message() -> None:
    error = no_token_error()
    assert error.message == (
        "ReplicateError Details:\ntitle: Unauthenticated\nstatus: 401\n"
        "detail: You did not pass an authentication token"
    )
    assert (error.status, error.title) == (401, "Unauthenticated")


def test_format_error_takes_status_from_http_not_body() -> None:
    assert format_error(429, {"status": 500}) == "ReplicateError Details:\nstatus: 429"


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Retry-After": "7"}, {"detail": "x", "retry_after": 3}, 7.0),
        ({"Retry-After": "0.5"}, {}, 0.5),
        ({}, {"detail": "Request was throttled.", "retry_after": 5}, 5.0),
        ({}, {"detail": "Request was throttled. Your rate limit resets in ~30s."}, 30.0),
        ({}, {"detail": "Request was throttled. Expected available in 1 second."}, 1.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, {}, 0.0),
        ({"Retry-After": "soon"}, {"detail": "Request was throttled."}, None),
    ],
)
def test_retry_after_sources(headers: dict[str, str], body: Any, expected: float | None) -> None:
    assert retry_after_of(problem(429, body, headers)) == expected


async def test_429_is_rate_limited_with_retry_after(clock: FakeClock) -> None:
    body = {"detail": "Request was throttled. Your rate limit resets in ~30s.", "status": 429}
    client = make_client(Recorder(problem(429, body)), clock, attempts=1)
    with pytest.raises(UpstreamRateLimited) as caught:
        await client.get("p1", deadline=clock.now + 60)
    assert caught.value.message == (
        "ReplicateError Details:\nstatus: 429\ndetail: Request was throttled. "
        "Your rate limit resets in ~30s."
    )
    assert caught.value.retry_after == 30.0


# --- create: routes and headers --------------------------------------------------------------


async def test_official_model_create_route_and_body(clock: FakeClock) -> None:
    recorder = Recorder(httpx.Response(201, json=prediction_json()))
    client = make_client(recorder, clock)
    ref = ModelRef.parse("black-forest-labs/flux-schnell")
    prediction = await client.create(ref, {"prompt": "a"}, wait_seconds=60, deadline=clock.now + 37)
    [request] = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/v1/models/black-forest-labs/flux-schnell/predictions"
    assert json.loads(request.content) == {"input": {"prompt": "a"}}
    assert request.headers["Authorization"] == "Bearer r8_test"
    assert request.headers["Prefer"] == "wait=37"
    assert request.headers["Cancel-After"] == "37s"
    assert prediction == Prediction("p1", PredictionStatus.STARTING, None, None, "")


async def test_versioned_create_route_and_body(clock: FakeClock) -> None:
    recorder = Recorder(httpx.Response(201, json=prediction_json()))
    client = make_client(recorder, clock)
    ref = ModelRef.parse(f"stability-ai/sdxl:{VERSION}")
    await client.create(ref, {"prompt": "a"}, wait_seconds=10, deadline=clock.now + 300)
    [request] = recorder.requests
    assert str(request.url) == f"{BASE}/v1/predictions"
    assert json.loads(request.content) == {"version": VERSION, "input": {"prompt": "a"}}
    assert request.headers["Prefer"] == "wait=10"
    assert request.headers["Cancel-After"] == "300s"


async def test_sync_mode_off_sends_no_prefer(clock: FakeClock) -> None:
    recorder = Recorder(httpx.Response(201, json=prediction_json()))
    client = make_client(recorder, clock)
    await client.create(ModelRef("o", "n"), {}, wait_seconds=0, deadline=clock.now + 30)
    assert "Prefer" not in recorder.requests[0].headers


@pytest.mark.parametrize(
    ("wait", "remaining", "expected"),
    [
        (60, 300.0, "wait=60"),
        (60, 37.9, "wait=37"),
        (10, 300.0, "wait=10"),
        (60, 0.2, "wait=1"),
        (90, 900, "wait=60"),
    ],
)
def test_prefer_header(wait: int, remaining: float, expected: str) -> None:
    assert prefer_header(wait, remaining) == expected


@pytest.mark.parametrize(
    ("remaining", "expected"), [(37.0, "37s"), (36.2, "37s"), (2.0, "5s"), (-1.0, "5s")]
)
def test_cancel_after_header(remaining: float, expected: str) -> None:
    assert cancel_after_header(remaining) == expected


# --- retries ---------------------------------------------------------------------------------

THROTTLED = {"detail": "Request was throttled. Your rate limit resets in ~3s.", "status": 429}


async def test_throttled_create_is_retried_honouring_retry_after(clock: FakeClock) -> None:
    recorder = Recorder(
        problem(429, THROTTLED, {"Retry-After": "2"}),
        problem(429, THROTTLED),
        httpx.Response(201, json=prediction_json()),
    )
    client = make_client(recorder, clock)
    prediction = await client.create(
        ModelRef("o", "n"), {}, wait_seconds=60, deadline=clock.now + 60
    )
    assert prediction.id == "p1"
    assert len(recorder.requests) == 3
    assert clock.sleeps == [2.0, 3.0]
    # the retried create asks for what is left of the deadline
    assert recorder.requests[2].headers["Cancel-After"] == "55s"


async def test_a_throttled_create_takes_its_turn_at_the_rate_limit_again(clock: FakeClock) -> None:
    recorder = Recorder(
        problem(429, THROTTLED, {"Retry-After": "1"}),
        problem(429, THROTTLED, {"Retry-After": "1"}),
        httpx.Response(201, json=prediction_json()),
    )
    client = make_client(recorder, clock)
    turns: list[int] = []

    async def pace() -> None:
        turns.append(len(recorder.requests))

    prediction = await client.create(
        ModelRef("o", "n"), {}, wait_seconds=60, deadline=clock.now + 60, pace=pace
    )
    assert prediction.id == "p1"
    assert turns == [1, 2]  # a turn before each resend, after the pause; none before the first


async def test_a_create_refused_otherwise_takes_no_new_turn(clock: FakeClock) -> None:
    recorder = Recorder(httpx.ConnectError("refused"), httpx.Response(201, json=prediction_json()))
    client = make_client(recorder, clock)
    turns: list[int] = []

    async def pace() -> None:
        turns.append(len(recorder.requests))

    await client.create(ModelRef("o", "n"), {}, wait_seconds=60, deadline=clock.now + 60, pace=pace)
    assert turns == []  # nothing reached the account's limit: no turn spent


async def test_throttled_create_gives_up_when_the_deadline_would_pass(clock: FakeClock) -> None:
    recorder = Recorder(problem(429, {**THROTTLED, "retry_after": 30}))
    client = make_client(recorder, clock)
    with pytest.raises(UpstreamRateLimited) as caught:
        await client.create(ModelRef("o", "n"), {}, wait_seconds=60, deadline=clock.now + 10)
    assert caught.value.retry_after == 30.0
    assert len(recorder.requests) == 1
    assert clock.sleeps == []


async def test_throttled_create_stops_after_max_attempts(clock: FakeClock) -> None:
    recorder = Recorder(problem(429, {"detail": "throttled"}))
    client = make_client(recorder, clock, attempts=3)
    with pytest.raises(UpstreamRateLimited):
        await client.create(ModelRef("o", "n"), {}, wait_seconds=60, deadline=clock.now + 600)
    assert len(recorder.requests) == 3
    assert clock.sleeps == [0.5, 1.0]  # exponential backoff when no retry-after is given


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_create_is_never_retried_on_5xx(clock: FakeClock, status: int) -> None:
    recorder = Recorder(problem(status), httpx.Response(201, json=prediction_json()))
    client = make_client(recorder, clock)
    with pytest.raises(UpstreamHTTPError) as caught:
        await client.create(ModelRef("o", "n"), {}, wait_seconds=60, deadline=clock.now + 60)
    assert caught.value.status == status
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("eof"),
    ],
)
async def test_create_is_never_retried_once_sent(clock: FakeClock, error: Exception) -> None:
    recorder = Recorder(error, httpx.Response(201, json=prediction_json()))
    client = make_client(recorder, clock)
    with pytest.raises(UpstreamUnavailable):
        await client.create(ModelRef("o", "n"), {}, wait_seconds=60, deadline=clock.now + 60)
    assert len(recorder.requests) == 1


async def test_create_is_retried_when_the_connection_was_refused(clock: FakeClock) -> None:
    recorder = Recorder(httpx.ConnectError("refused"), httpx.Response(201, json=prediction_json()))
    client = make_client(recorder, clock)
    await client.create(ModelRef("o", "n"), {}, wait_seconds=60, deadline=clock.now + 60)
    assert len(recorder.requests) == 2


@pytest.mark.parametrize(
    "failure",
    [
        problem(429, THROTTLED),
        problem(500),
        problem(502, "<html/>"),
        problem(503),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("eof"),
    ],
    ids=["429", "500", "502", "503", "read-timeout", "connect", "protocol"],
)
async def test_reads_are_retried(clock: FakeClock, failure: httpx.Response | Exception) -> None:
    recorder = Recorder(
        failure, failure, httpx.Response(200, json=prediction_json(status="processing"))
    )
    client = make_client(recorder, clock)
    prediction = await client.get("p1", deadline=clock.now + 60)
    assert prediction.status is PredictionStatus.PROCESSING
    assert len(recorder.requests) == 3
    assert len(clock.sleeps) == 2


async def test_read_retries_end_with_the_last_error(clock: FakeClock) -> None:
    recorder = Recorder(problem(503, {"detail": "down", "status": 503}))
    client = make_client(recorder, clock, attempts=4)
    with pytest.raises(UpstreamHTTPError) as caught:
        await client.get("p1", deadline=clock.now + 600)
    assert caught.value.message == "ReplicateError Details:\nstatus: 503\ndetail: down"
    assert len(recorder.requests) == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]


async def test_read_retries_stop_at_the_deadline(clock: FakeClock) -> None:
    recorder = Recorder(problem(500))
    client = make_client(recorder, clock, attempts=50)
    with pytest.raises(UpstreamHTTPError):
        await client.get("p1", deadline=clock.now + 5)
    assert clock.now <= 1005
    assert len(recorder.requests) == 4  # sleeps 0.5 + 1 + 2 = 3.5; another 4 s would pass it


def test_backoff_jitter_stays_within_its_ratio() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, jitter=0.1)
    assert policy.backoff(1, lambda: 0.0) == pytest.approx(0.9)
    assert policy.backoff(1, lambda: 1.0) == pytest.approx(1.1)
    assert policy.backoff(10, lambda: 0.5) == pytest.approx(8.0)


# --- transport failures and malformed replies ------------------------------------------------


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            httpx.ConnectError("Connection refused"),
            "Replicate: could not connect while reading prediction p1",
        ),
        (httpx.ConnectTimeout("slow"), "Replicate: could not connect while reading prediction p1"),
        (httpx.ReadTimeout("slow"), "Replicate: timed out while reading prediction p1"),
        (httpx.ReadError("reset"), "Replicate: connection failed while reading prediction p1"),
    ],
)
async def test_transport_errors_are_unavailable(
    clock: FakeClock, error: Exception, message: str
) -> None:
    client = make_client(Recorder(error), clock, attempts=1)
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get("p1", deadline=clock.now + 60)
    assert caught.value.message.startswith(message)
    assert caught.value.__cause__ is error


@pytest.mark.parametrize(
    ("reply", "problem_text"),
    [
        (httpx.Response(200, content=b"<html>"), "the body is not JSON"),
        (httpx.Response(200, json=["x"]), "expected a JSON object"),
        (httpx.Response(200, json={"status": "starting"}), "the prediction has no id"),
        (httpx.Response(200, json={"id": "p1"}), "unknown prediction status None"),
        (
            httpx.Response(200, json={"id": "p1", "status": "exploded"}),
            "unknown prediction status 'exploded'",
        ),
        (httpx.Response(302, headers={"Location": "/elsewhere"}), "unexpected HTTP status 302"),
    ],
)
async def test_malformed_replies_are_unavailable(
    clock: FakeClock, reply: httpx.Response, problem_text: str
) -> None:
    client = make_client(Recorder(reply), clock, attempts=1)
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get("p1", deadline=clock.now + 60)
    assert (
        caught.value.message
        == f"Replicate: malformed reply while reading prediction p1: {problem_text}"
    )


async def test_cancel_posts_to_the_cancel_route(clock: FakeClock) -> None:
    recorder = Recorder(httpx.Response(200, json=prediction_json(status="canceled")))
    client = make_client(recorder, clock)
    await client.cancel("p 1", deadline=clock.now + 5)
    [request] = recorder.requests
    assert request.method == "POST"
    assert request.url.raw_path == b"/v1/predictions/p%201/cancel"


async def test_model_and_version_routes(clock: FakeClock) -> None:
    recorder = Recorder(httpx.Response(200, json={"latest_version": None}))
    client = make_client(recorder, clock)
    await client.model_version(ModelRef("o", "n"), deadline=clock.now + 5)
    await client.model_version(ModelRef("o", "n", VERSION), deadline=clock.now + 5)
    assert [r.url.path for r in recorder.requests] == [
        "/v1/models/o/n",
        f"/v1/models/o/n/versions/{VERSION}",
    ]


# --- predictions -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(PredictionStatus))
def test_every_status_parses(status: PredictionStatus) -> None:
    prediction = Prediction.parse(prediction_json(status=status.value), "x")
    assert prediction.status is status
    assert prediction.status.is_terminal == (status not in ("starting", "processing"))


def test_failure_of_each_terminal_state() -> None:
    failed = Prediction.parse(prediction_json(status="failed", error="NSFW content detected."), "x")
    failure = failed.failure()
    assert failure is not None
    assert (failure.message, failure.prediction_id) == ("NSFW content detected.", "p1")
    canceled = Prediction.parse(prediction_json(status="canceled"), "x").failure()
    assert canceled is not None
    assert canceled.message == "Replicate: prediction p1 was canceled"
    aborted = Prediction.parse(prediction_json(status="aborted"), "x").failure()
    assert aborted is not None
    assert aborted.message == "Replicate: prediction p1 was aborted before it started"
    assert Prediction.parse(prediction_json(status="succeeded"), "x").failure() is None


def test_image_urls_are_flattened_and_filtered() -> None:
    output = [
        "https://replicate.delivery/a/out-0.webp",
        ["http://127.0.0.1/b.png", None],
        "data:image/png;base64,AA",
        "text",
    ]
    prediction = Prediction.parse(prediction_json(output=output), "x")
    assert prediction.image_urls == (
        "https://replicate.delivery/a/out-0.webp",
        "http://127.0.0.1/b.png",
        "data:image/png;base64,AA",
    )
    single = Prediction.parse(prediction_json(output="https://replicate.delivery/x.webp"), "x")
    assert single.image_urls == ("https://replicate.delivery/x.webp",)


def test_progress_comes_from_the_last_tqdm_line() -> None:
    logs = (
        "Using seed: 1\n  0%|          | 0/16 [00:00<?, ?it/s]\n"
        " 25%|\u2588\u2588\u258c       | 4/16 [00:00<00:01,  7.85it/s]\n"
        " 50%|\u2588\u2588\u2588\u2588\u2588     | 8/16 [00:01<00:01,  7.80it/s]\n"
    )
    assert Prediction.parse(prediction_json(logs=logs), "x").progress == 0.5
    assert Prediction.parse(prediction_json(logs="no bars"), "x").progress is None
    assert Prediction.parse(prediction_json(logs=None), "x").progress is None
