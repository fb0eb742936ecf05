"""Images in, over real processes: ``imagegen serve`` and the Replicate double, the official
``openai`` SDK's ``images.edit`` (with and without a mask), and the seed endpoint with a data URL
and with a URL. The double opens every input it receives and reports its size; bad inputs are
400s naming the field, with nothing stored and nothing paid."""

from __future__ import annotations

import base64
import io
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from tests.e2e.conftest import TOKEN, imagegen
from tests.fakes.images import make_image
from tests.fakes.replicate_double import DoubleProcess
from tests.support.imagegen_process import ImagegenProcess

pytestmark = pytest.mark.e2e

KONTEXT = "black-forest-labs/flux-kontext-pro"
FILL = "black-forest-labs/flux-fill-pro"
SCHNELL = "black-forest-labs/flux-schnell"
MAX_INPUT_BYTES = 400_000
_KEY = re.compile(r"^[0-9a-f]{64}\.(png|jpg|webp|gif)$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, double: DoubleProcess):
    env = {
        # The double's loopback address would be refused as private: allow it (and only it).
        "IMAGEGEN_INPUT_ALLOWED_HOSTS": json.dumps([double.base_url]),
        "IMAGEGEN_MAX_INPUT_PIXELS": str(1024 * 1024),
        "IMAGEGEN_MAX_INPUT_IMAGE_BYTES": str(MAX_INPUT_BYTES),
    }
    with imagegen(tmp_path_factory.mktemp("inputs"), double, **env) as process:
        yield process


@pytest.fixture
def api(server: ImagegenProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client


@pytest.fixture
def sdk(server: ImagegenProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


def noise(width: int, height: int) -> bytes:
    """A PNG that does not compress: past Replicate's 256 kB data-URL limit when large."""
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG")
    return out.getvalue()


def data_url(data: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(data).decode()}"


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def stored_keys(server: ImagegenProcess) -> set[str]:
    root = server.workdir / "data" / "images"
    return {p.name for p in root.rglob("*") if _KEY.match(p.name)} if root.exists() else set()


def creates(control: Any) -> int:
    return int(control.stats()["creates"]["total"])


def history(api: httpx.Client, generation_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/generations/{generation_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def last_prediction(control: Any) -> dict[str, Any]:
    return dict(control.stats()["predictions"][-1])


# --- the SDK's images.edit ----------------------------------------------------------------------


def test_sdk_edit_without_a_mask(sdk, api, control) -> None:
    photo = make_image(640, 480, "png", (30, 90, 200), gradient=True)
    result = sdk.images.edit(
        model=KONTEXT, image=("photo.png", photo, "image/png"), prompt="make it night"
    )
    assert result.data is not None
    (item,) = result.data
    assert item.url is not None
    assert size_of(httpx.get(item.url).content) == (640, 480)  # match_input_image
    prediction = last_prediction(control)
    assert prediction["image_inputs"]["input_image"] == {
        "width": 640,
        "height": 480,
        "via": "data_url",
    }
    record = history(api, result.id)  # type: ignore[attr-defined]
    (sent,) = record["inputs"]
    assert (sent["role"], sent["width"], sent["height"]) == ("image", 640, 480)
    assert httpx.get(sent["url"]).content == photo  # the stored input, byte for byte
    assert record["image_urls"] == [item.url]  # and the stored output, both in the history
    assert record["predictions"][0]["inputs"]["aspect_ratio"] == "match_input_image"


def test_sdk_edit_with_a_mask_and_b64_json(sdk, api, control) -> None:
    photo = noise(300, 300)  # larger than a data URL may be: through Replicate's files API
    assert 256_000 < len(photo) < MAX_INPUT_BYTES
    mask = make_image(300, 300, "png", (255, 255, 255))
    result = sdk.images.edit(
        model=FILL,
        image=("photo.png", photo, "image/png"),
        mask=("mask.png", mask, "image/png"),
        prompt="a red door",
        response_format="b64_json",
    )
    assert result.data is not None
    (item,) = result.data
    assert item.b64_json is not None
    assert size_of(base64.b64decode(item.b64_json)) == (300, 300)
    stats = control.stats()
    assert stats["uploads"] == 1
    prediction = stats["predictions"][-1]
    assert prediction["image_inputs"]["image"] == {"width": 300, "height": 300, "via": "file"}
    assert prediction["image_inputs"]["mask"]["via"] == "data_url"
    inputs = history(api, result.id)["inputs"]  # type: ignore[attr-defined]
    assert [(i["role"], i["size_bytes"]) for i in inputs] == [
        ("image", len(photo)),
        ("mask", len(mask)),
    ]


def test_sdk_edit_of_a_model_that_takes_no_image_is_a_422(sdk, control) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        sdk.images.edit(model=SCHNELL, image=("a.png", make_image(64, 64), "image/png"), prompt="x")
    assert "takes no input image" in caught.value.message
    assert creates(control) == 0


def test_sdk_edit_of_something_not_an_image_is_a_400(sdk, server, control) -> None:
    before = stored_keys(server)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.edit(model=KONTEXT, image=("a.png", b"not an image", "image/png"), prompt="x")
    assert caught.value.body["param"] == "image"  # type: ignore[index]
    assert stored_keys(server) == before
    assert creates(control) == 0


# --- the seed endpoint ----------------------------------------------------------------------------


def seed(model: str = KONTEXT, width: int = 640, height: int = 480, **extra: Any) -> dict:
    return {
        "model": model,
        "prompt": "make it night",
        "num_images": 1,
        "width": width,
        "height": height,
        **extra,
    }


def test_seed_with_a_data_url(api, control) -> None:
    photo = make_image(640, 480, "png", (200, 40, 40))
    response = api.post("/api/v1/images/generate", json=seed(image=data_url(photo)))
    assert response.status_code == 200, response.text
    record = history(api, response.json()["id"])
    assert [(i["role"], i["width"], i["height"]) for i in record["inputs"]] == [("image", 640, 480)]
    assert len(record["images"]) == 1
    again = api.post("/api/v1/images/generate", json=seed(image=data_url(photo))).json()
    assert history(api, again["id"])["inputs"][0]["url"] == record["inputs"][0]["url"]


def test_seed_with_a_url(api, control, double) -> None:
    # An image served over HTTP: an output of a prediction made on the double directly.
    made = httpx.post(
        f"{double.base_url}/v1/models/{SCHNELL}/predictions",
        json={"input": {"prompt": "a cat", "aspect_ratio": "4:3", "megapixels": "0.25"}},
        headers={"Authorization": f"Bearer {TOKEN}", "Prefer": "wait=10"},
        timeout=30,
    ).json()
    (url,) = made["output"]
    response = api.post("/api/v1/images/generate", json=seed(image=url, width=576, height=448))
    assert response.status_code == 200, response.text
    (sent,) = history(api, response.json()["id"])["inputs"]
    assert sent["source_url"] == url
    assert (sent["width"], sent["height"]) == (576, 448)
    assert last_prediction(control)["image_inputs"]["input_image"]["width"] == 576


def test_seed_without_the_image_a_model_needs_is_a_422(api, control) -> None:
    response = api.post("/api/v1/images/generate", json=seed(model=FILL))
    assert response.status_code == 422
    assert "needs an input image" in response.json()["error"]
    assert creates(control) == 0


BAD_INPUTS = {
    "not-an-image": ({"image": data_url(b"<html>hello</html>")}, "image"),
    "mask-of-another-size": (
        {"image": data_url(make_image(640, 480)), "mask": data_url(make_image(320, 240))},
        "mask",
    ),
    "too-many-pixels": ({"image": data_url(make_image(1100, 1000))}, "image"),
    "too-large": ({"image": data_url(noise(400, 400))}, "image"),
    "unreachable-url": ({"image": "https://unreachable.invalid/photo.png"}, "image"),
    "private-address": ({"image": "https://127.0.0.1:9/photo.png"}, "image"),
}


@pytest.mark.parametrize(("extra", "field"), BAD_INPUTS.values(), ids=list(BAD_INPUTS))
def test_bad_input_is_a_400_naming_the_field(api, server, control, extra, field) -> None:
    before = stored_keys(server)
    model = FILL if "mask" in extra else KONTEXT
    response = api.post("/api/v1/images/generate", json=seed(model=model, **extra))
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{field}: ")
    assert stored_keys(server) == before  # nothing stored
    assert creates(control) == 0  # nothing paid
