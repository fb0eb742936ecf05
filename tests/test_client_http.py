"""The command line's HTTP client: the key as a Bearer token (to imagegen only), the API's
error messages, and server-sent events parsed as the API sends them."""

from __future__ import annotations

import json

import httpx
import pytest

from imagegen.client_http import ApiClient, ClientError, Event

BASE = "http://imagegen.test"
JOB = {"id": "gen_1", "status": "running", "progress": None}


def sse(*events: tuple[str, dict[str, object]]) -> bytes:
    blocks = [": keep-alive\n\n"]
    for number, (kind, data) in enumerate(events, 1):
        blocks.append(f"id: {number}\nevent: {kind}\ndata: {json.dumps(data)}\n\n")
    return "".join(blocks).encode()


def test_the_key_goes_to_imagegen_as_bearer_and_never_to_other_hosts() -> None:
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[str(request.url)] = request.headers.get("authorization")
        return httpx.Response(200, content=b"image", headers={"content-type": "image/png"})

    with ApiClient(BASE, api_key="sk-1", transport=httpx.MockTransport(handler)) as api:
        api.download(f"{BASE}/images/a.png")
        api.download("https://replicate.delivery/x/out-0.png")
    assert seen == {
        f"{BASE}/images/a.png": "Bearer sk-1",
        "https://replicate.delivery/x/out-0.png": None,
    }


def test_without_a_key_no_authorization_is_sent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        return httpx.Response(200, json={"data": [], "next_cursor": None})

    with ApiClient(BASE, transport=httpx.MockTransport(handler)) as api:
        assert api.history(limit=5) == {"data": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("status", "body", "message", "exit_code"),
    [
        (
            400,
            {"error": "width: must be an integer from 64 to 4096"},
            "HTTP 400: width: must be an integer from 64 to 4096",
            2,
        ),
        (401, {"error": {"message": "bad key", "type": "x"}}, "HTTP 401: bad key", 2),
        (502, "upstream down", "HTTP 502: upstream down", 1),
    ],
)
def test_errors_carry_the_apis_message(
    status: int, body: object, message: str, exit_code: int
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, dict):
            return httpx.Response(status, json=body)
        return httpx.Response(status, text=str(body))

    with (
        ApiClient(BASE, transport=httpx.MockTransport(handler)) as api,
        pytest.raises(ClientError) as caught,
    ):
        api.create({"prompt": "x"})
    assert str(caught.value) == message
    assert caught.value.exit_code == exit_code


def test_events_are_parsed_until_done_with_the_key_sent() -> None:
    done = {**JOB, "status": "succeeded", "progress": 1.0}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/generations/gen_1/events"
        assert request.headers["authorization"] == "Bearer sk-2"
        body = sse(("state", JOB), ("progress", {"id": "gen_1", "progress": 0.5}), ("done", done))
        return httpx.Response(200, content=body + b"event: state\ndata: {}\n\n")

    with ApiClient(BASE, api_key="sk-2", transport=httpx.MockTransport(handler)) as api:
        events = list(api.events("gen_1"))
    assert events == [
        Event("state", JOB),
        Event("progress", {"id": "gen_1", "progress": 0.5}),
        Event("done", done),
    ]


def test_a_refused_event_stream_is_a_client_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "generation gen_x not found"})

    with (
        ApiClient(BASE, transport=httpx.MockTransport(handler)) as api,
        pytest.raises(ClientError) as caught,
    ):
        list(api.events("gen_x"))
    assert str(caught.value) == "HTTP 404: generation gen_x not found"
