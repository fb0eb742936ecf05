"""JSON logs: one line per request and per generation state change, each with the request id
and the key's name (never the key), state changes with the generation id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from tests.keys.conftest import Served

from imagegen.logs import ContextFilter, JsonFormatter

SEED = "/api/v1/images/generate"
FLUX = {"model": "flux", "prompt": "a mole", "num_images": 1, "width": 512, "height": 512}


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """imagegen's loggers at INFO, written as ``imagegen serve`` writes them with
    ``IMAGEGEN_LOG_FORMAT=json`` (the same formatter and filter)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("imagegen")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(previous)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_one_line_per_request_and_per_state_change(served: Served, json_lines: io.StringIO) -> None:
    key = served.new_key("app")
    json_lines.truncate(0)
    json_lines.seek(0)
    with served.client(key) as api:
        created = api.post(SEED, json=FLUX, headers={"x-request-id": "req-from-client"})
        listed = api.get("/api/v1/generations")
    assert created.status_code == listed.status_code == 200
    gid = created.json()["id"]
    lines = parsed(json_lines)

    access = [line for line in lines if line["logger"] == "imagegen.access"]
    assert [(a["method"], a["path"], a["status_code"]) for a in access] == [
        ("POST", SEED, 200),
        ("GET", "/api/v1/generations", 200),
    ]
    assert access[0]["request_id"] == "req-from-client"
    assert access[1]["request_id"] == listed.headers["x-request-id"]
    assert all(a["key_name"] == "app" for a in access)
    assert all(a["duration_ms"] >= 0 for a in access)

    states = [line for line in lines if line["logger"] == "imagegen.generations"]
    # A slot was free: the job was written running (one write, one line), then succeeded.
    assert [s["status"] for s in states] == ["running", "succeeded"]
    for state in states:
        assert state["generation_id"] == gid
        assert state["request_id"] == "req-from-client"
        assert state["key_name"] == "app"
    assert key not in json_lines.getvalue()


def test_the_json_formatter_writes_one_object_per_line() -> None:
    record = logging.LogRecord("imagegen.x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    record.generation_id = "gen_1"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "a b"
    assert data["level"] == "warning"
    assert data["generation_id"] == "gen_1"
