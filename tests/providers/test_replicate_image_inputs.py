"""Input images on Replicate: which input takes them (from the model's own schema), when
``match_input_image`` is used, refusals before anything is paid, and how the bytes travel
(data URL when small, the files API when large) to the double, which opens them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from tests.fakes.images import make_image
from tests.fakes.replicate import DoubleConfig, ReplicateDouble
from tests.fakes.replicate_models import (
    FILL,
    FLUX_PRO,
    FLUX_SCHNELL,
    KONTEXT,
    SDXL,
    SDXL_VERSION,
    ModelSpec,
)

from imagegen.errors import InvalidRequest, UnsupportedModel
from imagegen.models import GenerationRequest, StoredImage
from imagegen.providers.base import GenerationContext
from imagegen.providers.replicate import ReplicateProvider
from imagegen.providers.replicate.image_inputs import ImageFields, image_fields, image_inputs
from imagegen.providers.replicate.mapping import SizeMemo, batch_field, plan_predictions
from imagegen.providers.replicate.schema import ModelSchema, read_model_schema
from imagegen.providers.replicate.uploads import DATA_URL_MAX_BYTES
from imagegen.storage.base import make_key
from imagegen.storage.local import LocalImageStore

TOKEN = "r8_test"


def schema_of(model: ModelSpec) -> ModelSchema:
    return read_model_schema(model.model_json(), pinned=False)


def stored(width: int, height: int, data: bytes | None = None) -> StoredImage:
    data = data or make_image(width, height)
    key = make_key(hashlib.sha256(data).hexdigest(), "png")
    return StoredImage(key, "image/png", width, height, len(data))


def request(
    model: ModelSpec,
    *images: StoredImage,
    mask: StoredImage | None = None,
    width: int = 1024,
    height: int = 1024,
) -> GenerationRequest:
    return GenerationRequest(
        model=model.ref,
        prompt="make it night",
        num_images=1,
        width=width,
        height=height,
        images=images,
        mask=mask,
    )


# --- which input takes the image ------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (KONTEXT, ImageFields("input_image", False, None)),
        (FILL, ImageFields("image", False, None)),
        (SDXL, ImageFields("image", False, None)),
        (FLUX_PRO, ImageFields("image_prompt", False, None)),
    ],
    ids=["kontext", "fill", "sdxl", "flux-1.1-pro"],
)
def test_the_image_goes_to_the_input_the_model_declares(model, expected) -> None:
    assert image_fields(schema_of(model), request(model, stored(64, 64))) == expected


def test_the_mask_goes_to_mask() -> None:
    fields = image_fields(schema_of(FILL), request(FILL, stored(64, 64), mask=stored(64, 64)))
    assert fields == ImageFields("image", False, "mask")


def test_a_list_input_takes_several_images() -> None:
    schema = schema_of(FLUX_SCHNELL)
    assert schema.inputs is not None
    uri = {"type": "string", "format": "uri"}
    inputs = {**schema.inputs, "input_images": {"type": "array", "items": uri}}
    listed = ModelSchema(inputs, schema.output)
    fields = image_fields(listed, request(FLUX_SCHNELL, stored(64, 64), stored(32, 32)))
    assert fields == ImageFields("input_images", True, None)


@pytest.mark.parametrize(
    ("model", "images", "mask", "words"),
    [
        (FLUX_SCHNELL, 1, False, "takes no input image"),
        (FILL, 0, False, "needs an input image ('image' input)"),
        (KONTEXT, 1, True, "takes no mask"),
    ],
    ids=["no-image-input", "image-required", "no-mask-input"],
)
def test_a_model_that_cannot_take_the_request_is_a_422(model, images, mask, words) -> None:
    req = request(model, *[stored(64, 64)] * images, mask=stored(64, 64) if mask else None)
    with pytest.raises(UnsupportedModel) as caught:
        image_fields(schema_of(model), req)
    assert words.replace("('image' input)", "(its 'image' input)") in caught.value.message


def test_several_images_for_a_one_image_model_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as caught:
        image_fields(schema_of(KONTEXT), request(KONTEXT, stored(64, 64), stored(64, 64)))
    assert caught.value.field == "image"


@pytest.mark.parametrize("model", [KONTEXT, FILL, SDXL, FLUX_PRO, FLUX_SCHNELL])
@pytest.mark.parametrize(("images", "mask"), [(0, False), (1, False), (1, True), (2, False)])
def test_the_inputs_worked_out_once_answer_as_the_schema_does(model, images, mask) -> None:
    """``SizeMemo.images`` (what the provider caches per model) gives what reading the schema
    for each request gives: the same fields, or the same refusal."""
    schema = schema_of(model)
    assert schema.inputs is not None
    memo = SizeMemo(schema.inputs)
    assert memo.images == image_inputs(schema.inputs)
    req = request(model, *[stored(64, 64)] * images, mask=stored(64, 64) if mask else None)
    try:
        expected: ImageFields | Exception = image_fields(schema, req)
    except (UnsupportedModel, InvalidRequest) as exc:
        expected = exc
    try:
        got: ImageFields | Exception = image_fields(schema, req, memo.images)
    except (UnsupportedModel, InvalidRequest) as exc:
        got = exc
    if isinstance(expected, Exception):
        assert type(got) is type(expected)
        assert str(got) == str(expected)
    else:
        assert got == expected


def test_the_batch_input_worked_out_once_is_that_of_its_own_inputs() -> None:
    schema = schema_of(FLUX_SCHNELL)
    assert schema.inputs is not None
    memo = SizeMemo(schema.inputs)
    assert memo.batch == batch_field(schema.inputs) == ("num_outputs", 4)
    req = replace(request(FLUX_SCHNELL), num_images=6)
    plans = plan_predictions(schema.inputs, req, sizes=memo)
    assert [plan.images for plan in plans] == [4, 2]
    # A memo of other inputs is not used for these: their own batch input counts.
    other = {**schema.inputs, "num_outputs": {"type": "integer", "maximum": 1}}
    assert not memo.covers(other)
    assert [plan.images for plan in plan_predictions(other, req, sizes=memo)] == [1] * 6


# --- match_input_image ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "size", "expected"),
    [
        ((800, 600), (1024, 768), "match_input_image"),  # the input's 4:3, asked for
        ((1000, 700), (1000, 700), "match_input_image"),  # 10:7: no offered ratio is closer
        ((800, 600), (1024, 1024), "1:1"),  # a square asked of a 4:3 input
        ((600, 800), (1344, 768), "16:9"),
    ],
)
def test_match_input_image_when_the_input_fits_the_request(image, size, expected) -> None:
    req = request(KONTEXT, stored(*image), width=size[0], height=size[1])
    (plan,) = plan_predictions(schema_of(KONTEXT).inputs, req, {"input_image": "data:..."})
    assert plan.inputs["aspect_ratio"] == expected
    assert plan.inputs["input_image"] == "data:..."


# --- the bytes on the wire, to the double --------------------------------------------------------


@pytest.fixture
def double() -> Any:
    with ReplicateDouble(DoubleConfig(token=TOKEN, duration=0.05, queue_time=0.0)) as double:
        yield double


@pytest.fixture
async def store(tmp_path: Path) -> LocalImageStore:
    return LocalImageStore(tmp_path / "images")


@pytest.fixture
async def provider(double: Any, store: LocalImageStore) -> AsyncIterator[ReplicateProvider]:
    async with httpx.AsyncClient(timeout=30) as http:
        yield ReplicateProvider(
            http, api_token=TOKEN, base_url=double.base_url, poll_interval=0.02, images=store
        )


async def put(store: LocalImageStore, data: bytes, width: int, height: int) -> StoredImage:
    image = stored(width, height, data)
    await store.put(image.key, data, image.content_type)
    return image


def noise(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG")
    return out.getvalue()


def context() -> GenerationContext:
    return GenerationContext(deadline=asyncio.get_running_loop().time() + 20)


async def test_a_small_image_goes_as_a_data_url(provider, store, double) -> None:
    image = await put(store, make_image(640, 480), 640, 480)
    result = await provider.generate(request(KONTEXT, image, width=640, height=480), context())
    (prediction,) = double.state.stats()["predictions"]
    assert prediction["input"]["input_image"].startswith("data:image/png;base64,")
    assert prediction["image_inputs"]["input_image"] == {
        "width": 640,
        "height": 480,
        "via": "data_url",
    }
    assert prediction["output_size"] == [640, 480]  # match_input_image kept the input's size
    assert double.state.stats()["uploads"] == 0
    assert len(result.images) == 1


async def test_a_large_image_goes_through_the_files_api(provider, store, double) -> None:
    data = noise(400, 300)
    assert len(data) > DATA_URL_MAX_BYTES
    image = await put(store, data, 400, 300)
    mask = await put(store, make_image(400, 300, "png", (255, 255, 255)), 400, 300)
    records: list[Any] = []

    async def on_prediction(record: Any) -> None:
        records.append(record)

    ctx = GenerationContext(
        deadline=asyncio.get_running_loop().time() + 20, on_prediction=on_prediction
    )
    await provider.generate(request(FILL, image, mask=mask, width=400, height=300), ctx)
    stats = double.state.stats()
    assert stats["uploads"] == 1
    (prediction,) = stats["predictions"]
    assert prediction["input"]["image"].startswith(f"{double.base_url}/v1/files/")
    assert prediction["image_inputs"]["image"] == {"width": 400, "height": 300, "via": "file"}
    assert prediction["image_inputs"]["mask"]["via"] == "data_url"
    assert prediction["output_size"] == [400, 300]
    recorded = records[0].inputs
    assert recorded["image"] == prediction["input"]["image"]
    assert recorded["mask"].startswith("data:image/png;base64,...")  # elided in the record
    assert len(recorded["mask"]) < 100


async def test_sdxl_takes_image_and_mask(provider, store, double) -> None:
    image = await put(store, make_image(512, 512), 512, 512)
    mask = await put(store, make_image(512, 512, "png", (255, 255, 255)), 512, 512)
    req = request(SDXL, image, mask=mask, width=512, height=512)
    req = replace(req, model=f"{SDXL.ref}:{SDXL_VERSION}")
    await provider.generate(req, context())
    (prediction,) = double.state.stats()["predictions"]
    assert set(prediction["image_inputs"]) == {"image", "mask"}


async def test_a_model_that_takes_no_image_is_refused_before_any_create(
    provider, store, double
) -> None:
    image = await put(store, make_image(64, 64), 64, 64)
    with pytest.raises(UnsupportedModel, match="takes no input image"):
        await provider.generate(request(FLUX_SCHNELL, image), context())
    with pytest.raises(UnsupportedModel, match="needs an input image"):
        await provider.generate(request(FILL), context())
    stats = double.state.stats()
    assert stats["creates"]["total"] == 0
    assert stats["uploads"] == 0


async def test_the_double_refuses_an_input_it_cannot_open(double) -> None:
    async with httpx.AsyncClient(base_url=double.base_url) as http:
        response = await http.post(
            f"/v1/models/{KONTEXT.ref}/predictions",
            json={"input": {"prompt": "x", "input_image": "data:image/png;base64,AAAA"}},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert response.status_code == 422
    assert response.json()["invalid_fields"][0]["field"] == "input.input_image"
    assert double.state.stats()["creates"]["total"] == 0


async def test_an_openai_style_mask_reaches_replicate_white_where_clear(
    provider, store, double
) -> None:
    image = await put(store, make_image(8, 4), 8, 4)
    clear = Image.new("RGBA", (8, 4), (0, 0, 0, 255))
    clear.paste((0, 0, 0, 0), (0, 0, 4, 4))  # repaint the left half, OpenAI's way
    out = io.BytesIO()
    clear.save(out, "PNG")
    mask = await put(store, out.getvalue(), 8, 4)
    await provider.generate(request(FILL, image, mask=mask, width=8, height=4), context())
    (prediction,) = double.state.stats()["predictions"]
    sent = base64.b64decode(prediction["input"]["mask"].split(",", 1)[1])
    with Image.open(io.BytesIO(sent)) as received:
        values = list(received.convert("L").tobytes())
    assert values == ([255] * 4 + [0] * 4) * 4  # white where it was clear


async def test_the_doubles_files_api_as_replicate_documents_it(double) -> None:
    data = make_image(20, 10)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=double.base_url, headers=auth) as http:
        created = await http.post(
            "/v1/files",
            files={"content": ("cat.png", data, "image/png")},
            data={"filename": "cat.png", "type": "image/png", "metadata": '{"k": 1}'},
        )
        assert created.status_code == 201
        body = created.json()
        assert {"id", "urls", "content_type", "size", "checksums", "metadata"} <= set(body)
        assert (body["size"], body["content_type"], body["metadata"]) == (
            len(data),
            "image/png",
            {"k": 1},
        )
        assert body["checksums"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert body["urls"]["get"] == f"{double.base_url}/v1/files/{body['id']}"
        assert (await http.get(f"/v1/files/{body['id']}")).json() == body
        assert (await http.get(f"/v1/files/{body['id']}/download")).content == data
        missing = await http.get("/v1/files/nope")
        assert missing.status_code == 404
        assert (await http.post("/v1/files", data={"x": "1"})).status_code == 400
        anonymous = await http.get(f"/v1/files/{body['id']}", headers={"Authorization": ""})
        assert anonymous.status_code == 401
