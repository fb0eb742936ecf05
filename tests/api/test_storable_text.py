"""Text a database cannot store (lone surrogates, NUL) is a 400 naming the field, on every
endpoint and on both backends; and one damaged record never makes the history unreadable."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator

import pytest
from anyio.from_thread import start_blocking_portal
from fastapi.testclient import TestClient
from tests.api.conftest import WEBHOOK_SECRET, FakeWorld
from tests.db import postgres_database

from imagegen.api.app import create_app

SEED = "/api/v1/images/generate"
OPENAI = "/v1/images/generations"
GOOD_SEED = {"model": "owner/model", "prompt": "a cat", "num_images": 1, "width": 512}
GOOD_SEED["height"] = 512
BAD_TEXT = {"surrogate": "a\ud800b", "low surrogate": "\udfff", "nul": "a\x00b"}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_client(
    request: pytest.FixtureRequest, tmp_path
) -> Iterator[tuple[TestClient, FakeWorld]]:
    world = FakeWorld(tmp_path, webhook_secret=WEBHOOK_SECRET)
    with start_blocking_portal() as portal:
        if request.param == "postgresql":
            with portal.wrap_async_context_manager(postgres_database()) as url:
                world.database_url = url
                app = create_app(world.settings, services=world.services)
                with TestClient(app, raise_server_exceptions=False) as client:
                    yield client, world
        else:
            app = create_app(world.settings, services=world.services)
            with TestClient(app, raise_server_exceptions=False) as client:
                yield client, world


def post_json(client: TestClient, url: str, body: object, **headers: str):
    # json.dumps escapes surrogates and NUL (\ud800, \u0000): valid JSON, as a client sends it
    return client.post(
        url, content=json.dumps(body), headers={"content-type": "application/json", **headers}
    )


SEED_FIELDS = [
    ("model", lambda bad: {**GOOD_SEED, "model": bad}),
    ("prompt", lambda bad: {**GOOD_SEED, "prompt": bad}),
    ("negative_prompt", lambda bad: {**GOOD_SEED, "negative_prompt": bad}),
    ("webhook", lambda bad: {**GOOD_SEED, "webhook": "https://example.com/" + bad}),
    (
        "webhook_events_filter.0",
        lambda bad: {
            **GOOD_SEED,
            "webhook": "https://example.com/h",
            "webhook_events_filter": [bad],
        },
    ),
    ("body", lambda bad: {**GOOD_SEED, "field" + bad: 1}),
]
OPENAI_FIELDS = [
    (name, lambda bad, name=name: {"prompt": "a cat", name: bad})
    for name in (
        "model",
        "size",
        "quality",
        "style",
        "background",
        "moderation",
        "user",
        "safety_identifier",
        "negative_prompt",
    )
] + [("prompt", lambda bad: {"prompt": bad})]


@pytest.mark.parametrize("kind", sorted(BAD_TEXT))
@pytest.mark.parametrize(("field", "build"), SEED_FIELDS, ids=[f for f, _ in SEED_FIELDS])
def test_seed_refuses_unstorable_text_naming_the_field(backend_client, kind, field, build):
    client, world = backend_client
    for prefer in ({}, {"prefer": "respond-async"}):
        response = post_json(client, SEED, build(BAD_TEXT[kind]), **prefer)
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith(f"{field}: "), response.text
    assert world.provider.calls == []
    listed = client.get("/api/v1/generations")
    assert listed.status_code == 200
    assert listed.json()["data"] == []


@pytest.mark.parametrize("kind", sorted(BAD_TEXT))
@pytest.mark.parametrize(("field", "build"), OPENAI_FIELDS, ids=[f for f, _ in OPENAI_FIELDS])
def test_openai_refuses_unstorable_text_naming_the_param(backend_client, kind, field, build):
    client, world = backend_client
    response = post_json(client, OPENAI, build(BAD_TEXT[kind]))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field
    assert error["type"] == "invalid_request_error"
    assert world.provider.calls == []
    assert client.get("/api/v1/generations").json()["data"] == []


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/generations/gen_%00", "generation_id"),
        ("/api/v1/generations/gen_%00/cancel", "generation_id"),
        ("/api/v1/generations/gen_%00/events", "generation_id"),
        ("/api/v1/generations?cursor=%00", "cursor"),
        ("/images/abc%00.png", "key"),
    ],
)
def test_parameters_refuse_nul_naming_them(backend_client, url, field):
    client, _ = backend_client
    method = "POST" if url.endswith("/cancel") else "GET"
    response = client.request(method, url)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{field}: ")


def test_a_damaged_record_does_not_break_the_history(client, world):
    """Records stored before the check (text with escaped lone surrogates, a request missing a
    field) are shown cleaned or left out; the rest of the history reads as before."""
    created = [
        post_json(client, SEED, {**GOOD_SEED, "prompt": f"cat {i}"}, prefer="respond-async").json()
        for i in range(3)
    ]
    for job in created:
        assert client.get(job["urls"]["get"]).status_code == 200
    database = sqlite3.connect(world.tmp_path / "jobs.db")
    with database:
        database.execute(
            "UPDATE generations SET request = json_set(request, '$.prompt', json('\"x\\ud800\"')),"
            " metadata = json('{\"note\": \"\\udfff\"}'), error = 'boom' WHERE id = ?",
            (created[0]["id"],),
        )
        database.execute(
            "UPDATE generations SET request = json_remove(request, '$.width') WHERE id = ?",
            (created[1]["id"],),
        )
    database.close()
    listed = client.get("/api/v1/generations")
    assert listed.status_code == 200, listed.text
    by_id = {item["id"]: item for item in listed.json()["data"]}
    assert set(by_id) == {created[0]["id"], created[2]["id"]}
    assert by_id[created[0]["id"]]["prompt"] == "x\ufffd"
    assert by_id[created[0]["id"]]["metadata"]["note"] == "\ufffd"
    one = client.get(created[0]["urls"]["get"])
    assert one.status_code == 200
    assert one.json()["prompt"] == "x\ufffd"


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",
        "!!!",
        _cursor("[]"),
        _cursor('["2026-01-01T00:00:00+00:00", 1]'),
        _cursor('["2026-01-01T00:00:00", "gen_x"]'),
        _cursor('["0001-01-01T00:00:00-05:00", "gen_x"]'),
        _cursor('["9999-12-31T23:59:59-05:00", "gen_x"]'),
        _cursor('["0001-01-01T00:00:00+00:00", "gen_x"]'),
        _cursor('["2026-01-01T00:00:00+00:00", "gen_\\u0000"]'),
        _cursor('["2026-01-01T00:00:00+00:00", "gen_\\ud800"]'),
    ],
)
def test_a_malformed_or_out_of_range_cursor_is_400(backend_client, cursor):
    client, _ = backend_client
    response = client.get("/api/v1/generations", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("cursor: ")


@pytest.mark.parametrize("url", [SEED, OPENAI])
def test_an_empty_body_is_named_empty(client, url):
    response = client.post(url, content=b"", headers={"content-type": "application/json"})
    assert response.status_code == 400
    body = response.json()["error"]
    message = body if isinstance(body, str) else body["message"]
    assert "body is empty" in message, message


def test_whole_numbers_written_as_floats_are_accepted_as_the_readme_says(client, world):
    """README: a number with no fractional part (``2.0``) is that integer; ``2.5`` is refused."""
    body = {**GOOD_SEED, "num_images": 2.0, "width": 512.0}
    accepted = post_json(client, SEED, body, prefer="respond-async")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["num_images"] == 2
    assert accepted.json()["width"] == 512
    for field, value in (("num_images", 2.5), ("width", 1e400), ("height", float("nan"))):
        refused = client.post(
            SEED,
            content=json.dumps({**GOOD_SEED, field: value}).replace("Infinity", "1e400"),
            headers={"content-type": "application/json"},
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"].startswith(f"{field}"), refused.text
