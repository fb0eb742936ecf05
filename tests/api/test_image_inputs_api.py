"""Input images at the HTTP edge, in process: the edits form as OpenAI's SDK sends it, the seed
endpoint's ``image``/``mask``, and what the history shows."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.api.conftest import FakeWorld
from tests.fakes.images import make_image

from imagegen.api.app import create_app

EDITS = "/v1/images/edits"
SEED = "/api/v1/images/generate"
PHOTO = make_image(300, 200, "png", (10, 200, 30))
MASK = make_image(300, 200, "png", (255, 255, 255))


def files(*images: bytes, mask: bytes | None = None, name: str = "image") -> list[Any]:
    parts = [(name, (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    if mask is not None:
        parts.append(("mask", ("mask.png", mask, "image/png")))
    return parts


def error_of(response: Any) -> dict[str, Any]:
    return dict(response.json()["error"])


def test_an_edit_runs_with_the_images_size_and_shows_its_inputs(client, world) -> None:
    response = client.post(EDITS, data={"prompt": "a hat", "n": "2"}, files=files(PHOTO, mask=MASK))
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 2
    (call,) = world.provider.calls
    assert (call.width, call.height) == (300, 200)  # size omitted: the image's own
    assert [image.width for image in call.images] == [300]
    assert call.mask is not None
    record = client.get(f"/api/v1/generations/{body['id']}").json()
    assert [(i["role"], i["width"], i["height"]) for i in record["inputs"]] == [
        ("image", 300, 200),
        ("mask", 300, 200),
    ]
    assert client.get(record["inputs"][0]["url"]).content == PHOTO
    assert record["metadata"]["endpoint"] == "openai-edits"


def test_several_images_as_image_array(client, world) -> None:
    small = make_image(64, 64)
    response = client.post(
        EDITS,
        data={"prompt": "a hat", "size": "512x512", "input_fidelity": "high"},
        files=files(PHOTO, small, name="image[]"),
    )
    assert response.status_code == 200, response.text
    (call,) = world.provider.calls
    assert [(i.width, i.height) for i in call.images] == [(300, 200), (64, 64)]
    assert (call.width, call.height) == (512, 512)
    record = client.get(f"/api/v1/generations/{response.json()['id']}").json()
    assert record["metadata"]["openai_options"] == {"input_fidelity": "high"}


@pytest.mark.parametrize(
    ("data", "parts", "param"),
    [
        ({"prompt": "x"}, files(mask=MASK), "image"),
        ({"prompt": "x", "image": "not a file"}, files(mask=MASK), "image"),
        ({"prompt": "x", "colour": "red"}, files(PHOTO), "colour"),
        ({"prompt": "x", "n": "two"}, files(PHOTO), "n"),
        ({"prompt": "x", "n": "0"}, files(PHOTO), "n"),
        ({"prompt": "x", "size": "huge"}, files(PHOTO), "size"),
        ({"prompt": "x", "stream": "maybe"}, files(PHOTO), "stream"),
        ({}, files(PHOTO), "prompt"),
        ({"prompt": "x"}, files(b"GIF89a nope"), "image"),
        ({"prompt": "x"}, files(PHOTO, mask=make_image(30, 20)), "mask"),
        ({"prompt": "x"}, files(PHOTO, b"nope"), "image[1]"),
        ({"prompt": "x"}, [("prompt", ("p.txt", b"x", "text/plain")), *files(PHOTO)], "prompt"),
    ],
    ids=[
        "no-image",
        "image-as-text",
        "unknown-field",
        "n-not-a-number",
        "n-out-of-range",
        "bad-size",
        "bad-stream",
        "no-prompt",
        "not-an-image",
        "mask-size",
        "second-image",
        "prompt-as-file",
    ],
)
def test_a_bad_form_is_openais_400_naming_the_param(client, world, data, parts, param) -> None:
    response = client.post(EDITS, data=data, files=parts)
    assert response.status_code == 400, response.text
    assert error_of(response)["param"] == param
    assert world.provider.calls == []
    assert not any((world.tmp_path / "images").rglob("*.png"))  # nothing stored


def test_a_json_body_is_refused(client) -> None:
    response = client.post(EDITS, json={"prompt": "x"})
    assert response.status_code == 400
    assert error_of(response)["param"] == "Content-Type"


def test_the_body_is_capped(tmp_path: Path) -> None:
    world = FakeWorld(tmp_path, max_upload_bytes=20_000)
    big = make_image(300, 300, gradient=True) + bytes(30_000)
    with TestClient(create_app(world.settings, services=world.services)) as client:
        response = client.post(EDITS, data={"prompt": "x"}, files=files(big))
    assert response.status_code == 400
    assert "larger than 20000 bytes" in error_of(response)["message"]


def seed(**extra: Any) -> dict[str, Any]:
    return {"model": "o/n", "prompt": "x", "num_images": 1, "width": 300, "height": 200, **extra}


def test_the_seed_endpoint_takes_image_and_mask_as_data_urls(client, world) -> None:
    image = f"data:image/png;base64,{base64.b64encode(PHOTO).decode()}"
    mask = f"data:image/png;base64,{base64.b64encode(MASK).decode()}"
    response = client.post(SEED, json=seed(image=image, mask=mask))
    assert response.status_code == 200, response.text
    (call,) = world.provider.calls
    assert call.images[0].width == 300
    assert call.mask is not None
    record = client.get(f"/api/v1/generations/{response.json()['id']}").json()
    assert [i["role"] for i in record["inputs"]] == ["image", "mask"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"image": "data:image/png;base64,AAAA"}, "image"),
        ({"image": "ftp://example.com/a.png"}, "image"),
        ({"image": 3}, "image"),
        ({"mask": "data:image/png;base64,AAAA"}, "mask"),
    ],
)
def test_bad_seed_inputs_are_400s_naming_the_field(client, world, extra, field) -> None:
    response = client.post(SEED, json=seed(**extra))
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(field)
    assert world.provider.calls == []


def test_a_retried_edit_with_its_idempotency_key_is_the_same_job(client, world) -> None:
    headers = {"Idempotency-Key": "edit-1"}
    first = client.post(EDITS, data={"prompt": "a hat"}, files=files(PHOTO), headers=headers)
    # Another multipart boundary (httpx draws one per request), the same content.
    again = client.post(EDITS, data={"prompt": "a hat"}, files=files(PHOTO), headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert len(world.provider.calls) == 1
    other = client.post(EDITS, data={"prompt": "a cap"}, files=files(PHOTO), headers=headers)
    assert other.status_code == 422  # the key reused with another request
