"""The seed's contract over real HTTP: imagegen serve + the Replicate double as processes."""

from __future__ import annotations

import io
import subprocess
import sys
import time

import httpx
import pytest
from PIL import Image
from tests.e2e.conftest import imagegen

pytestmark = pytest.mark.e2e

SEED_EXAMPLE = {
    "model": "ibm-granite/granite-3.0-8b-instruct",
    "prompt": "a futuristic city skyline at sunset",
    "num_images": 2,
    "width": 512,
    "height": 512,
}


def generate(api: httpx.Client, **fields):
    body = {**SEED_EXAMPLE, "model": "black-forest-labs/flux-schnell", **fields}
    return api.post("/api/v1/images/generate", json=body)


def decoded(api: httpx.Client, url: str) -> Image.Image:
    response = api.get(url)
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(response.content))
    assert response.headers["content-type"] == Image.MIME[image.format]
    return image


def test_seed_curl_example_with_a_text_model_is_422_before_any_prediction(api, control):
    response = api.post(
        "/api/v1/images/generate",
        content=httpx.Request("POST", "/", json=SEED_EXAMPLE).content,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "granite" in response.json()["error"]
    assert control.stats()["creates"]["total"] == 0


def test_image_model_returns_the_seed_shape_with_urls_imagegen_serves(api, control, server):
    response = generate(api)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prompt"] == SEED_EXAMPLE["prompt"]
    assert body["model"] == "black-forest-labs/flux-schnell"
    assert len(body["image_urls"]) == 2
    for url in body["image_urls"]:
        assert url.startswith(f"{server.base_url}/images/")
        image = decoded(api, url)
        assert image.size == (512, 512)  # flux-schnell 1:1 at 0.25 megapixels

    # Replicate deletes its files; imagegen's links keep working.
    assert control.expire() >= 2
    for url in body["image_urls"]:
        assert decoded(api, url).size == (512, 512)
    prediction_urls = api.get(f"/api/v1/generations/{body['id']}").json()
    assert prediction_urls["status"] == "succeeded"


@pytest.mark.parametrize(
    ("model", "fields", "sizes", "inputs"),
    [
        (
            "black-forest-labs/flux-schnell",
            {"num_images": 6, "width": 1344, "height": 768},
            [(1344, 768)] * 6,
            [
                {"aspect_ratio": "16:9", "num_outputs": 4},
                {"aspect_ratio": "16:9", "num_outputs": 2},
            ],
        ),
        (
            "stability-ai/sdxl:39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b",
            {"num_images": 3, "width": 768, "height": 512},
            [(768, 512)] * 3,
            [{"width": 768, "height": 512, "num_outputs": 3}],
        ),
        (
            "black-forest-labs/flux-1.1-pro",
            {"num_images": 2, "width": 1000, "height": 700},
            [(992, 704)] * 2,
            [{"aspect_ratio": "custom", "width": 992, "height": 704}] * 2,
        ),
        (
            "google/imagen-4",
            {"num_images": 2, "width": 900, "height": 1200},
            None,
            [{"aspect_ratio": "3:4"}] * 2,
        ),
    ],
)
def test_each_model_shape_gets_mapped_inputs_and_the_requested_count(
    api, control, model, fields, sizes, inputs
):
    response = generate(api, model=model, **fields)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["image_urls"]) == fields["num_images"]
    got = [decoded(api, url).size for url in body["image_urls"]]
    if sizes is not None:
        assert got == sizes
    else:  # aspect-ratio-only model: the nearest ratio the model can make
        assert all(w / h == pytest.approx(3 / 4, rel=0.08) for w, h in got)  # 896x1280
    record = api.get(f"/api/v1/generations/{body['id']}").json()
    sent = [p["inputs"] for p in record["predictions"]]
    assert len(sent) == len(inputs)
    for actual, expected in zip(sorted(sent, key=str), sorted(inputs, key=str), strict=True):
        assert expected.items() <= actual.items(), actual
    assert control.stats()["creates"]["total"] == len(inputs)


def test_no_key_is_401_in_the_seed_exact_form(tmp_path, double, control):
    with imagegen(tmp_path, double, REPLICATE_API_KEY="") as server:
        response = httpx.post(
            f"{server.base_url}/api/v1/images/generate",
            json={**SEED_EXAMPLE, "model": "black-forest-labs/flux-schnell"},
            timeout=30,
        )
    assert response.status_code == 401
    assert response.json() == {
        "error": "ReplicateError Details:\ntitle: Unauthenticated\nstatus: 401\n"
        "detail: You did not pass an authentication token"
    }
    assert control.stats()["creates"]["total"] == 0


def test_wrong_key_is_replicates_own_401(tmp_path, double, control):
    with imagegen(tmp_path, double, REPLICATE_API_KEY="r8_wrong") as server:
        response = httpx.post(
            f"{server.base_url}/api/v1/images/generate",
            json={**SEED_EXAMPLE, "model": "black-forest-labs/flux-schnell"},
            timeout=30,
        )
    assert response.status_code == 401
    assert response.json()["error"] == (
        "ReplicateError Details:\ntitle: Unauthenticated\nstatus: 401\n"
        "detail: You did not pass a valid authentication token"
    )


def test_deadline_is_504_and_the_prediction_is_canceled_upstream(tmp_path, double, control):
    control.script("never_finish")
    with imagegen(tmp_path, double, IMAGEGEN_REQUEST_TIMEOUT="2") as server:
        response = httpx.post(
            f"{server.base_url}/api/v1/images/generate",
            json={**SEED_EXAMPLE, "model": "black-forest-labs/flux-schnell", "num_images": 1},
            timeout=30,
        )
    assert response.status_code == 504, response.text
    stats = control.stats()
    assert stats["creates"]["total"] == 1
    assert stats["cancels"] >= 1
    assert [p["status"] for p in stats["predictions"]] == ["canceled"]
    assert stats["predictions"][0]["cancel_after"]  # Replicate would stop billing on its own too


@pytest.mark.parametrize(
    ("fault", "fields", "status", "message"),
    [
        ("insufficient_credit", {}, 402, "title: Insufficient credit\nstatus: 402"),
        (
            None,
            {"route": "create", "status": 500, "body": None},
            502,
            "ReplicateError Details:\nstatus: 500",
        ),
        ("html_502", {}, 502, "ReplicateError Details:\nstatus: 502"),
        ("malformed_json", {}, 502, "Replicate"),
        ("fail_prediction", {"error": "CUDA out of memory"}, 502, "CUDA out of memory"),
        ("abort", {}, 502, "abort"),
        ("rate_limit", {"retry_after": 3600}, 429, "status: 429"),
        ("output_not_image", {}, 502, "image"),
        ("output_private_url", {}, 502, "10.0.0.1"),
        ("empty_output", {}, 502, "image"),
    ],
)
def test_failures_upstream_are_clear_typed_errors(api, control, fault, fields, status, message):
    control.script(fault, **fields)
    response = generate(api, num_images=1)
    assert response.status_code == status, response.text
    assert message.lower() in response.json()["error"].lower()
    if status == 429:
        assert int(response.headers["retry-after"]) > 0
    assert control.stats()["creates"]["total"] <= 1  # never a second paid prediction


def test_unknown_model_is_a_404_naming_it_with_replicates_error(api, control):
    response = generate(api, model="nobody/no-such-model")
    assert response.status_code == 404
    assert response.headers["x-should-retry"] == "false"
    assert response.json()["error"] == (
        "model 'nobody/no-such-model' was not found on Replicate\n"
        "ReplicateError Details:\nstatus: 404\ndetail: The requested resource could not be found."
    )


def test_invalid_version_is_422(api, control):
    response = generate(api, model="stability-ai/sdxl:" + "0" * 64)
    assert response.status_code == 422
    assert "Invalid version or not permitted" in response.json()["error"]


def test_fewer_images_than_asked_is_reported(api, control):
    control.script("nsfw_drop_one")
    body = generate(api, num_images=3).json()
    assert len(body["image_urls"]) == 2
    assert body["images_missing"] == 1


def test_throttled_create_is_retried_within_the_deadline(api, control):
    control.script("rate_limit", retry_after=1)
    response = generate(api, num_images=1)
    assert response.status_code == 200, response.text
    assert control.stats()["creates"]["total"] == 1


def test_client_disconnect_cancels_the_prediction(api, control, server):
    control.script("never_finish")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server.base_url}/api/v1/images/generate",
            json={**SEED_EXAMPLE, "model": "black-forest-labs/flux-schnell", "num_images": 1},
            timeout=1.5,
        )
    for _ in range(200):
        stats = control.stats()
        if stats["predictions"] and stats["predictions"][0]["status"] == "canceled":
            break
        time.sleep(0.05)
    assert [p["status"] for p in control.stats()["predictions"]] == ["canceled"]


def test_cli_generate_saves_the_images(tmp_path, server, control):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagegen",
            "generate",
            "a red fox",
            "--model",
            "black-forest-labs/flux-schnell",
            "-n",
            "2",
            "--width",
            "512",
            "--height",
            "512",
            "-o",
            str(tmp_path / "out"),
            "--url",
            server.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    paths = result.stdout.split()
    assert len(paths) == 2
    for path in paths:
        assert Image.open(path).size == (512, 512)


def test_bad_setting_stops_start_up_naming_it(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "imagegen", "serve"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "IMAGEGEN_PORT": "not-a-port"},
    )
    assert result.returncode == 2
    assert "IMAGEGEN_PORT" in result.stderr


def test_community_model_without_a_version_runs_its_latest_version(api, control):
    response = generate(api, model="stability-ai/sdxl", num_images=1, width=768, height=512)
    assert response.status_code == 200, response.text
    record = api.get(f"/api/v1/generations/{response.json()['id']}").json()
    assert record["predictions"][0]["inputs"]["width"] == 768
    assert control.stats()["creates"]["by_model"] == {"stability-ai/sdxl": 1}
