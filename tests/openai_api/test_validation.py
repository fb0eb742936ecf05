"""Bad input to ``/v1/images/generations`` is a 400 in OpenAI's envelope naming the field."""

from __future__ import annotations

import httpx
import pytest
from tests.fakes.openai_double import OpenAIDouble

URL = "/v1/images/generations"
GOOD = {"model": "dall-e-3", "prompt": "an otter"}


def with_(**changes: object) -> dict[str, object]:
    body = dict(GOOD)
    for field, value in changes.items():
        if value is ...:
            body.pop(field)
        else:
            body[field] = value
    return body


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (with_(n="2"), "n", "invalid_type"),
        (with_(n=2.5), "n", "invalid_type"),
        (with_(n=True), "n", "invalid_type"),
        (with_(n=0), "n", "invalid_value"),
        (with_(n=11), "n", "invalid_value"),
        (with_(size=1024), "size", "invalid_type"),
        (with_(size="1024x"), "size", "invalid_value"),
        (with_(size="63x63"), "size", "invalid_value"),
        (with_(size="1024x1024 "), "size", "invalid_value"),
        (with_(prompt=...), "prompt", "missing_required_parameter"),
        (with_(prompt=""), "prompt", "invalid_value"),
        (with_(prompt="x" * 4001), "prompt", "invalid_value"),
        (with_(prompt=5), "prompt", "invalid_type"),
        (with_(model=7), "model", "invalid_type"),
        (with_(model=""), "model", "invalid_value"),
        (with_(model="not a model"), "model", "invalid_value"),
        (with_(response_format="png"), "response_format", "invalid_value"),
        (with_(output_format="gif"), "output_format", "invalid_value"),
        (with_(output_compression=101), "output_compression", "invalid_value"),
        (with_(quality=1), "quality", "invalid_type"),
        (with_(seed="1"), "seed", "invalid_type"),
        (with_(seed=-1), "seed", "invalid_value"),
        (with_(negative_prompt=3), "negative_prompt", "invalid_type"),
        (with_(stream=True), "stream", "invalid_value"),
        (with_(steps=4), "steps", "unknown_parameter"),
    ],
)
def test_bad_fields_are_400_naming_the_param(
    api: httpx.Client,
    openai_double: OpenAIDouble,
    body: dict[str, object],
    param: str,
    code: str,
) -> None:
    response = api.post(URL, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert param in error["message"]
    assert openai_double.stats()["total_calls"] == 0


@pytest.mark.parametrize(
    ("content", "headers", "param"),
    [
        (b"{not json", {"Content-Type": "application/json"}, None),
        (b"[1, 2]", {"Content-Type": "application/json"}, None),
        (b'{"prompt": "x"}', {"Content-Type": "text/plain"}, "Content-Type"),
        (b'{"prompt": "x"}', {"Content-Type": "application/json", "Idempotency-Key": "a b"}, None),
    ],
)
def test_malformed_requests_are_400(
    api: httpx.Client, content: bytes, headers: dict[str, str], param: str | None
) -> None:
    response = api.post(URL, content=content, headers=headers)
    assert response.status_code == 400, response.text
    if param is not None:
        assert response.json()["error"]["param"] == param


def test_openai_fields_imagegen_does_not_act_on_are_accepted(
    api: httpx.Client, openai_double: OpenAIDouble
) -> None:
    body = with_(
        quality="hd",
        style="natural",
        background="auto",
        moderation="low",
        user="user-1",
        safety_identifier="hash-1",
        output_compression=80,
        partial_images=0,
        stream=False,
        n=1,
        size="auto",
    )
    response = api.post(URL, json=body)
    assert response.status_code == 200, response.text
    assert openai_double.stats()["requests"][0]["size"] == "1024x1024"
