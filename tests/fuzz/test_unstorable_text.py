"""Hypothesis against a live ``imagegen serve``: text with lone surrogates and NULs, in any string
field, field name, path or query parameter of every endpoint, is never a 5xx; where it cannot
be stored it is a 400 naming the field; and the history stays readable whatever was sent.

Schemathesis (``test_openapi_fuzz.py``) draws strings from the schemas, which never yields a
lone surrogate; these cases are drawn on purpose. Bodies are sent as ``json.dumps`` writes them
(``"\\ud800"``, ``"\\u0000"``): valid JSON, as any client would send.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.imagegen_process import ImagegenProcess

from imagegen.api.wire import problem

pytestmark = pytest.mark.e2e

BAD = ["\ud800", "\udfff", "\x00", "\udbff\x00", "a\ud83d", "\ude00b"]
HOSTILE = st.one_of(
    st.tuples(st.text(max_size=12), st.sampled_from(BAD), st.text(max_size=12)).map("".join),
    st.text(st.characters(codec=None, categories=None, exclude_categories=()), max_size=24),
)
MODEL = "black-forest-labs/flux-schnell"
SEED = {"model": MODEL, "prompt": "a fox", "num_images": 1, "width": 512, "height": 512}
OPENAI = {"model": MODEL, "prompt": "a fox"}
SEED_FIELDS = ["model", "prompt", "negative_prompt", "webhook", "<key>"]
OPENAI_FIELDS = [
    *("model", "prompt", "size", "quality", "style", "background", "moderation"),
    *("user", "safety_identifier", "negative_prompt", "<key>"),
]
RUN = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _post(server: ImagegenProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}{path}",
        content=json.dumps(body),
        headers={"content-type": "application/json", "prefer": "respond-async"},
        timeout=30,
    )


def _check(response: httpx.Response, text: str, field: str | None) -> None:
    assert response.status_code < 500, response.text
    if problem(text) is None:
        return
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    message = error if isinstance(error, str) else error["message"]
    if field is not None:
        assert message.startswith(f"{field}: "), message


@pytest.mark.parametrize(
    ("path", "good", "fields"),
    [
        ("/api/v1/images/generate", SEED, SEED_FIELDS),
        ("/v1/images/generations", OPENAI, OPENAI_FIELDS),
    ],
    ids=["seed", "openai"],
)
def test_create_bodies(fuzz_server: ImagegenProcess, path, good, fields) -> None:
    @given(field=st.sampled_from(fields), text=HOSTILE)
    @RUN
    def check(field: str, text: str) -> None:
        if field == "<key>":
            body, named = {**good, text or "x": 1}, "body" if problem(text) else None
        else:
            body, named = {**good, field: text}, field
        _check(_post(fuzz_server, path, body), text, named)

    check()
    history = httpx.get(f"{fuzz_server.base_url}/api/v1/generations?limit=100", timeout=30)
    assert history.status_code == 200, history.text


def test_parameters(fuzz_server: ImagegenProcess) -> None:
    @given(text=HOSTILE, where=st.sampled_from(["id", "cursor", "image"]))
    @RUN
    def check(text: str, where: str) -> None:
        raw = text.encode("utf-8", "surrogatepass")  # what a client could put on the wire
        quoted = "".join(f"%{byte:02X}" for byte in raw) or "x"
        url = {
            "id": f"/api/v1/generations/{quoted}",
            "cursor": f"/api/v1/generations?cursor={quoted}",
            "image": f"/images/{quoted}",
        }[where]
        response = httpx.get(f"{fuzz_server.base_url}{url}", timeout=30)
        assert response.status_code < 500, response.text

    check()
    history = httpx.get(f"{fuzz_server.base_url}/api/v1/generations", timeout=30)
    assert history.status_code == 200, history.text
