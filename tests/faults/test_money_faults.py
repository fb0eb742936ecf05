"""Faults that must never cost a second prediction, over real processes.

- The image folder becomes unusable after the prediction succeeded (here: replaced by a file,
  which fails every write as a full disk or a read-only mount would, root included): the job
  stays running, keeps its prediction and stores the output again with backoff; once the
  folder is back it succeeds, with one prediction upstream.
- A create whose reply is lost after Replicate made the prediction (the connection reset): the
  job adopts that prediction, found in the account's list, and succeeds; nothing is created
  twice and nothing paid for is dropped.
- A cancel sent at once, while the create is on its way (or held open by sync mode): the
  prediction (if the create reached Replicate at all) is canceled upstream within a second,
  never left to run and bill.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import httpx
import pytest
from tests.e2e.test_jobs_e2e import wait_until
from tests.fakes.replicate_double import DoubleControl, DoubleProcess
from tests.faults.conftest import TOKEN
from tests.support.imagegen_process import ImagegenProcess

pytestmark = pytest.mark.e2e

BODY = {
    "model": "black-forest-labs/flux-schnell",
    "prompt": "a lighthouse in a storm",
    "num_images": 1,
    "width": 512,
    "height": 512,
}
ASYNC = {"Prefer": "respond-async"}


def serve(tmp, fault_double: DoubleProcess, **env: str) -> ImagegenProcess:
    return ImagegenProcess(
        tmp,
        {
            "REPLICATE_API_KEY": TOKEN,
            "REPLICATE_BASE_URL": fault_double.base_url,
            "IMAGEGEN_POLL_INTERVAL": "0.05",
            "IMAGEGEN_REQUEST_TIMEOUT": "10",
            **env,
        },
    )


def test_an_output_that_cannot_be_stored_is_stored_again_once_the_folder_is_back(
    tmp_path, fault_double, upstream: DoubleControl
):
    images = tmp_path / "data" / "images"
    with (
        serve(tmp_path, fault_double) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as api,
    ):
        moved = images.with_name("images.away")
        if images.exists():
            images.rename(moved)
        images.write_bytes(b"not a folder")  # every write under it fails (ENOTDIR)
        job = api.post("/api/v1/images/generate", json=BODY, headers=ASYNC).json()

        def prediction_done() -> bool:
            predictions = upstream.stats()["predictions"]
            return bool(predictions) and predictions[0]["status"] == "succeeded"

        wait_until(prediction_done, 10, "the prediction to succeed")
        time.sleep(2.5)  # a few attempts to store the output
        current = api.get(job["urls"]["get"]).json()
        assert current["status"] == "running", current  # neither failed nor created again
        assert upstream.stats()["creates"]["total"] == 1

        images.unlink()
        if moved.exists():
            moved.rename(images)

        def ended() -> dict[str, Any] | None:
            latest = api.get(job["urls"]["get"]).json()
            return latest if latest["completed_at"] else None

        done = wait_until(ended, 15, "the job to end once storage is back")
        assert done["status"] == "succeeded", done
        image = api.get(done["image_urls"][0])
        assert image.status_code == 200
        assert image.headers["content-type"].startswith("image/")
    assert upstream.stats()["creates"]["total"] == 1
    shutil.rmtree(tmp_path / "data", ignore_errors=True)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1])
@pytest.mark.parametrize("wait", ["0", "5"])  # the default, and sync mode holding the create
def test_a_cancel_at_any_early_moment_stops_billing_within_a_second(
    tmp_path, fault_double, upstream: DoubleControl, delay: float, wait: str
):
    with (
        serve(tmp_path, fault_double, IMAGEGEN_REPLICATE_WAIT=wait) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as api,
    ):
        api.post("/api/v1/images/generate", json={**BODY, "prompt": "warm the schema cache"})
        upstream.reset()
        upstream.configure(duration=2.0, max_wait=60)  # a sync-mode create would be held
        job = api.post("/api/v1/images/generate", json=BODY, headers=ASYNC).json()
        time.sleep(delay)
        asked = time.time()
        assert api.post(job["urls"]["cancel"]).json()["status"] == "canceled"
        time.sleep(1.2)
        predictions = upstream.stats()["predictions"]
    for prediction in predictions:  # none, if the cancel came before the create was sent
        assert prediction["status"] == "canceled", prediction
        assert prediction["completed"] - asked <= 1.0


def test_a_create_whose_reply_is_lost_adopts_its_prediction_and_succeeds(
    tmp_path, fault_double, upstream: DoubleControl
):
    with (
        serve(tmp_path, fault_double) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as api,
    ):
        upstream.script("lose_reply", route="create")
        answer = api.post("/api/v1/images/generate", json=BODY)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        record = api.get(f"/api/v1/generations/{body['id']}").json()
    stats = upstream.stats()
    assert stats["faults_fired"] == ["lose_reply"]
    assert stats["creates"]["total"] == 1
    assert [p["id"] for p in record["predictions"]] == [p["id"] for p in stats["predictions"]]
    assert len(body["image_urls"]) == 1
