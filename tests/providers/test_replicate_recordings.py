"""Every response Replicate really sent (the recordings in tests/fixtures/replicate) parses
through imagegen's provider, and error replies read exactly as the official client shows them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import replicate.exceptions
import yaml
from tests.support.replicate_fixtures import RECORDINGS

from imagegen.providers.replicate.errors import error_from_response
from imagegen.providers.replicate.prediction import Prediction, PredictionStatus


def interactions() -> list[tuple[str, dict[str, Any]]]:
    assert RECORDINGS.is_dir(), f"the recordings are missing: {RECORDINGS}"
    found = []
    for path in sorted(RECORDINGS.glob("*.yaml")):
        for item in yaml.safe_load(path.read_text())["interactions"]:
            found.append(
                (f"{path.stem}:{item['request']['method']} {item['request']['uri']}", item)
            )
    return found


def _status(item: dict[str, Any]) -> int:
    response = item["response"]
    return int(response["status"]["code"] if "status" in response else response["status_code"])


def _response(item: dict[str, Any]) -> httpx.Response:
    response = item["response"]
    body = response.get("content") or response["body"]["string"]
    headers = {
        k: v[0] for k, v in response.get("headers", {}).items() if k.lower() != "content-encoding"
    }
    return httpx.Response(_status(item), content=body.encode(), headers=headers)


PREDICTIONS = [
    (name, item)
    for name, item in interactions()
    if "/predictions" in item["request"]["uri"] and _status(item) < 400
]
ERRORS = [(name, item) for name, item in interactions() if _status(item) >= 400]


def test_the_recordings_hold_predictions_and_errors():
    assert len(PREDICTIONS) >= 20
    assert ERRORS


@pytest.mark.parametrize(("name", "item"), PREDICTIONS, ids=[n for n, _ in PREDICTIONS])
def test_recorded_prediction_parses(name, item):
    response = _response(item)
    data = response.json()
    items = data.get("results", [data])  # the list endpoint pages its results
    for entry in items:
        prediction = Prediction.parse(entry, "recorded")
        assert prediction.id == entry["id"]
        assert prediction.status is PredictionStatus(entry["status"])
        if prediction.status is PredictionStatus.SUCCEEDED and "sdxl" in json.dumps(
            entry.get("model")
        ):
            assert prediction.image_urls, entry


@pytest.mark.parametrize(("name", "item"), ERRORS, ids=[n for n, _ in ERRORS])
def test_recorded_error_reads_as_the_official_client_shows_it(name, item):
    response = _response(item)
    ours = error_from_response(response)
    theirs = replicate.exceptions.ReplicateError.from_response(response)
    assert str(ours) == str(theirs)
    assert ours.status == response.status_code
