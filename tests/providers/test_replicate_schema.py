"""Reading Replicate model schemas and mapping requests onto them (pure functions).

The model documents below copy the shape of real Cog schemas (notes §4): enums live in their own
components and are referenced through ``allOf: [{$ref}]``. The other Replicate test modules import
them from here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import jsonschema_rs
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.replicate_fixtures import RECORDINGS

from imagegen.errors import InvalidRequest, UnsupportedModel
from imagegen.models import GenerationRequest
from imagegen.providers.replicate.mapping import plan_predictions, size_inputs, split_count
from imagegen.providers.replicate.schema import (
    ModelSchema,
    ensure_image_output,
    read_model_schema,
    resolve,
)
from imagegen.providers.replicate.sizing import Bounds, fit_dimensions, pick_megapixels

URI = {"type": "string", "format": "uri", "title": "Output"}
URI_LIST = {"type": "array", "items": {"type": "string", "format": "uri"}, "title": "Output"}
FLUX_RATIOS = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"]
RECRAFT_SIZES = [
    "1024x1024", "1365x1024", "1024x1365", "1536x1024", "1024x1536", "1820x1024", "1024x1820",
    "1024x2048", "2048x1024", "1434x1024", "1024x1434", "1024x1280", "1280x1024", "1024x1707",
    "1707x1024",
]  # fmt: skip


def _enum_ref(name: str, default: Any) -> dict[str, Any]:
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}], "default": default}


def _enum(name: str, values: list[Any]) -> dict[str, Any]:
    return {"enum": values, "type": "string", "title": name, "description": "An enumeration."}


def _int(**bounds: Any) -> dict[str, Any]:
    return {"type": "integer", **bounds}


def cog_version(
    properties: Mapping[str, Any],
    output: Mapping[str, Any],
    enums: Mapping[str, list[Any]] | None = None,
    required: tuple[str, ...] = ("prompt",),
) -> dict[str, Any]:
    """A version object as ``GET /v1/models/{o}/{n}/versions/{v}`` returns it."""
    schemas: dict[str, Any] = {
        "Input": {"type": "object", "title": "Input", "properties": dict(properties)},
        "Output": dict(output),
        "Status": _enum("Status", ["starting", "processing", "succeeded", "canceled", "failed"]),
    }
    if required:
        schemas["Input"]["required"] = list(required)
    schemas.update({name: _enum(name, values) for name, values in (enums or {}).items()})
    return {
        "id": "0" * 64,
        "cog_version": "0.9.0",
        "openapi_schema": {"openapi": "3.0.2", "components": {"schemas": schemas}},
    }


def cog_model(version: Mapping[str, Any]) -> dict[str, Any]:
    """A model object as ``GET /v1/models/{o}/{n}`` returns it."""
    return {"owner": "o", "name": "n", "visibility": "public", "latest_version": dict(version)}


PROMPT = {"type": "string", "title": "Prompt", "x-order": 0}
SEED = {"type": "integer", "title": "Seed"}

FLUX_SCHNELL = cog_version(
    {
        "prompt": PROMPT,
        "aspect_ratio": _enum_ref("aspect_ratio", "1:1"),
        "num_outputs": _int(default=1, minimum=1, maximum=4),
        "num_inference_steps": _int(default=4, minimum=1, maximum=4),
        "seed": SEED,
        "output_format": _enum_ref("output_format", "webp"),
        "output_quality": _int(default=80, minimum=0, maximum=100),
        "disable_safety_checker": {"type": "boolean", "default": False},
        "go_fast": {"type": "boolean", "default": True},
        "megapixels": _enum_ref("megapixels", "1"),
    },
    URI_LIST,
    {
        "aspect_ratio": FLUX_RATIOS,
        "output_format": ["webp", "jpg", "png"],
        "megapixels": ["1", "0.25"],
    },
)
SDXL = cog_version(
    {
        "prompt": {**PROMPT, "default": "An astronaut riding a rainbow unicorn"},
        "negative_prompt": {"type": "string", "default": ""},
        "width": _int(default=1024),
        "height": _int(default=1024),
        "num_outputs": _int(default=1, minimum=1, maximum=4),
        "scheduler": _enum_ref("scheduler", "K_EULER"),
        "refine": _enum_ref("refine", "no_refiner"),
        "seed": SEED,
        "guidance_scale": {"type": "number", "default": 7.5, "minimum": 1, "maximum": 50},
    },
    URI_LIST,
    {"scheduler": ["DDIM", "K_EULER", "PNDM"], "refine": ["no_refiner", "base_image_refiner"]},
    required=(),
)
FLUX_11_PRO = cog_version(
    {
        "prompt": PROMPT,
        "aspect_ratio": _enum_ref("aspect_ratio", "1:1"),
        "width": _int(minimum=256, maximum=1440),
        "height": _int(minimum=256, maximum=1440),
        "seed": SEED,
        "output_format": _enum_ref("output_format", "webp"),
        "safety_tolerance": _int(default=2, minimum=1, maximum=6),
        "prompt_upsampling": {"type": "boolean", "default": False},
    },
    URI,
    {
        "aspect_ratio": ["custom", "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"],
        "output_format": ["webp", "jpg", "png"],
    },
)
FLUX_11_PRO_STEP_32 = cog_version(
    {
        "prompt": PROMPT,
        "aspect_ratio": _enum_ref("aspect_ratio", "1:1"),
        "width": _int(minimum=256, maximum=1440, multipleOf=32),
        "height": _int(minimum=256, maximum=1440, multipleOf=32),
    },
    URI,
    {"aspect_ratio": ["custom", "1:1", "16:9"]},
)
SDXL_LIGHTNING = cog_version(
    {
        "prompt": PROMPT,
        "negative_prompt": {"type": "string", "default": "worst quality, low quality"},
        "width": _int(default=1024, minimum=256, maximum=1280),
        "height": _int(default=1024, minimum=256, maximum=1280),
        "num_outputs": _int(default=1, minimum=1, maximum=4),
        "num_inference_steps": _int(default=4, minimum=1, maximum=10),
        "scheduler": _enum_ref("scheduler", "K_EULER"),
        "seed": _int(default=0),
    },
    URI_LIST,
    {"scheduler": ["DDIM", "K_EULER"]},
)
IMAGEN_4 = cog_version(
    {
        "prompt": PROMPT,
        "aspect_ratio": _enum_ref("aspect_ratio", "1:1"),
        "output_format": _enum_ref("output_format", "jpg"),
        "safety_filter_level": _enum_ref("safety_filter_level", "block_only_high"),
    },
    URI,
    {
        "aspect_ratio": ["1:1", "9:16", "16:9", "3:4", "4:3"],
        "output_format": ["jpg", "png"],
        "safety_filter_level": ["block_low_and_above", "block_only_high"],
    },
)
RECRAFT = cog_version(
    {
        "prompt": PROMPT,
        "size": _enum_ref("size", "1024x1024"),
        "aspect_ratio": _enum_ref("aspect_ratio", "Not set"),
        "style": _enum_ref("style", "any"),
    },
    URI,
    {
        "size": RECRAFT_SIZES,
        "aspect_ratio": ["Not set", "1:1", "4:3", "3:4", "16:9", "9:16", "2:1", "1:2"],
        "style": ["any", "realistic_image", "digital_illustration"],
    },
)
LLAMA = cog_version(
    {"prompt": PROMPT, "max_tokens": _int(default=512)},
    {
        "type": "array",
        "items": {"type": "string"},
        "title": "Output",
        "x-cog-array-type": "iterator",
        "x-cog-array-display": "concatenate",
    },
)
IMAGE_MODELS = {
    "flux-schnell": FLUX_SCHNELL,
    "sdxl": SDXL,
    "flux-1.1-pro": FLUX_11_PRO,
    "flux-1.1-pro-32": FLUX_11_PRO_STEP_32,
    "sdxl-lightning": SDXL_LIGHTNING,
    "imagen-4": IMAGEN_4,
    "recraft-v3": RECRAFT,
}


def inputs_of(version: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    inputs = read_model_schema(version, pinned=True).inputs
    assert inputs is not None
    return inputs


def request(
    width: int = 1024, height: int = 1024, num_images: int = 1, **extra: Any
) -> GenerationRequest:
    return GenerationRequest(
        model="o/n", prompt="a cat", num_images=num_images, width=width, height=height, **extra
    )


def validator(version: Mapping[str, Any]) -> Any:
    components = version["openapi_schema"]["components"]
    return jsonschema_rs.validator_for(
        {"$ref": "#/components/schemas/Input", "components": components}
    )


# --- reading schemas -------------------------------------------------------------------------


def test_enums_behind_allof_refs_are_resolved() -> None:
    inputs = inputs_of(FLUX_SCHNELL)
    assert inputs["aspect_ratio"]["enum"] == FLUX_RATIOS
    assert inputs["aspect_ratio"]["default"] == "1:1"  # the property's own keys win
    assert inputs["megapixels"]["enum"] == ["1", "0.25"]


def test_model_and_version_documents_read_alike() -> None:
    assert read_model_schema(cog_model(SDXL), pinned=False) == read_model_schema(SDXL, pinned=True)


@pytest.mark.parametrize(
    "document",
    [None, {}, {"latest_version": None}, {"latest_version": {"openapi_schema": None}}, "junk"],
)
def test_documents_without_a_schema_read_as_unknown(document: Any) -> None:
    assert read_model_schema(document, pinned=False) == ModelSchema(None, None)


def test_a_ref_cycle_does_not_hang() -> None:
    components = {"A": {"$ref": "#/components/schemas/B"}, "B": {"$ref": "#/components/schemas/A"}}
    assert isinstance(resolve({"$ref": "#/components/schemas/A"}, components), dict)


def test_the_recorded_sdxl_schema_maps(recorded_sdxl_model: dict[str, Any]) -> None:
    schema = read_model_schema(recorded_sdxl_model, pinned=False)
    ensure_image_output(schema, "stability-ai/sdxl")
    [plan] = plan_predictions(schema.inputs, request(512, 768, 2, seed=7))
    assert plan.inputs == {
        "prompt": "a cat",
        "width": 512,
        "height": 768,
        "num_outputs": 2,
        "seed": 7,
    }


@pytest.fixture
def recorded_sdxl_model() -> dict[str, Any]:
    """``GET /v1/models/stability-ai/sdxl`` as Replicate really answered it (recorded)."""
    path = RECORDINGS / "models-get.yaml"
    interaction = yaml.safe_load(path.read_text())["interactions"][0]
    return dict(json.loads(interaction["response"]["content"]))


# --- output check ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", list(IMAGE_MODELS.values()), ids=list(IMAGE_MODELS))
def test_image_models_pass_the_output_check(version: Mapping[str, Any]) -> None:
    ensure_image_output(read_model_schema(version, pinned=True), "o/n")


@pytest.mark.parametrize(
    "output",
    [
        LLAMA["openapi_schema"]["components"]["schemas"]["Output"],
        {"type": "array", "items": {"type": "string"}},
        {"type": "string", "title": "Output"},
        {"type": "array", "items": URI, "x-cog-array-type": "iterator"},
        {"type": "object", "properties": {"text": {"type": "string"}}},
    ],
    ids=["llama-iterator", "string-array", "plain-string", "uri-iterator", "object"],
)
def test_text_models_are_refused(output: dict[str, Any]) -> None:
    schema = read_model_schema(cog_version({"prompt": PROMPT}, output), pinned=True)
    with pytest.raises(UnsupportedModel, match="does not generate images") as caught:
        ensure_image_output(schema, "meta/llama")
    assert caught.value.model == "meta/llama"


def test_an_unknown_output_is_allowed() -> None:
    ensure_image_output(ModelSchema(None, None), "o/n")


# --- mapping: the real-shaped models ---------------------------------------------------------


def test_flux_schnell_gets_nearest_aspect_and_megapixels() -> None:
    inputs = inputs_of(FLUX_SCHNELL)
    assert size_inputs(inputs, 1920, 1080) == {"aspect_ratio": "16:9", "megapixels": "1"}
    assert size_inputs(inputs, 512, 512) == {"aspect_ratio": "1:1", "megapixels": "0.25"}
    assert size_inputs(inputs, 480, 640) == {"aspect_ratio": "3:4", "megapixels": "0.25"}
    assert size_inputs(inputs, 600, 800) == {"aspect_ratio": "3:4", "megapixels": "1"}
    assert size_inputs(inputs, 64, 4096) == {"aspect_ratio": "9:21", "megapixels": "0.25"}


@pytest.mark.parametrize(
    ("area", "expected"), [(64 * 64, "0.25"), (600 * 600, "0.25"), (700 * 700, "1"), (4096**2, "1")]
)
def test_megapixels_prefers_quarter_below_about_0_4_mp(area: int, expected: str) -> None:
    assert pick_megapixels(["1", "0.25"], area) == expected


def test_sdxl_takes_width_and_height_rounded_to_8() -> None:
    inputs = inputs_of(SDXL)
    assert size_inputs(inputs, 1000, 750) == {"width": 1000, "height": 752}
    assert size_inputs(inputs, 4096, 64) == {"width": 4096, "height": 64}


def test_flux_11_pro_uses_custom_within_256_to_1440() -> None:
    inputs = inputs_of(FLUX_11_PRO)
    assert size_inputs(inputs, 1024, 768) == {
        "width": 1024,
        "height": 768,
        "aspect_ratio": "custom",
    }
    # too large: scaled down keeping 4:3, not clamped to a square
    assert size_inputs(inputs, 2048, 1536) == {
        "width": 1440,
        "height": 1080,
        "aspect_ratio": "custom",
    }
    # too extreme for the box: the most extreme shape it allows
    assert size_inputs(inputs, 4096, 64) == {"width": 1440, "height": 256, "aspect_ratio": "custom"}
    assert size_inputs(inputs, 64, 64) == {"width": 256, "height": 256, "aspect_ratio": "custom"}


def test_multiple_of_is_honoured() -> None:
    inputs = inputs_of(FLUX_11_PRO_STEP_32)
    assert size_inputs(inputs, 1000, 700) == {"width": 992, "height": 704, "aspect_ratio": "custom"}


def test_sdxl_lightning_clamps_to_256_1280() -> None:
    inputs = inputs_of(SDXL_LIGHTNING)
    assert size_inputs(inputs, 2048, 2048) == {"width": 1280, "height": 1280}
    assert size_inputs(inputs, 128, 128) == {"width": 256, "height": 256}


def test_imagen_gets_only_an_aspect_ratio() -> None:
    inputs = inputs_of(IMAGEN_4)
    assert size_inputs(inputs, 1024, 1024) == {"aspect_ratio": "1:1"}
    assert size_inputs(inputs, 1080, 1920) == {"aspect_ratio": "9:16"}
    assert size_inputs(inputs, 1200, 1000) == {"aspect_ratio": "4:3"}


def test_recraft_gets_the_nearest_size() -> None:
    inputs = inputs_of(RECRAFT)
    assert size_inputs(inputs, 512, 512) == {"size": "1024x1024"}
    assert size_inputs(inputs, 1920, 1080) == {"size": "1820x1024"}
    assert size_inputs(inputs, 1000, 2000) == {"size": "1024x2048"}


def test_flux_schnell_ten_images_fan_out_4_4_2_with_distinct_seeds() -> None:
    plans = plan_predictions(inputs_of(FLUX_SCHNELL), request(num_images=10, seed=100))
    assert [p.images for p in plans] == [4, 4, 2]
    assert [p.inputs["num_outputs"] for p in plans] == [4, 4, 2]
    assert [p.inputs["seed"] for p in plans] == [100, 101, 102]


def test_single_output_model_fans_out_one_per_prediction() -> None:
    plans = plan_predictions(inputs_of(FLUX_11_PRO), request(num_images=10))
    assert [p.images for p in plans] == [1] * 10
    assert all("num_outputs" not in p.inputs and "seed" not in p.inputs for p in plans)


def test_only_keys_the_schema_has_are_sent() -> None:
    wanted = request(seed=1, negative_prompt="blurry", output_format="png")
    [plan] = plan_predictions(inputs_of(IMAGEN_4), wanted)
    assert plan.inputs == {"prompt": "a cat", "aspect_ratio": "1:1", "output_format": "png"}
    [plan] = plan_predictions(inputs_of(SDXL), wanted)
    assert plan.inputs == {
        "prompt": "a cat",
        "width": 1024,
        "height": 1024,
        "num_outputs": 1,
        "seed": 1,
        "negative_prompt": "blurry",
    }


def test_output_format_aliases_jpeg_and_jpg() -> None:
    [plan] = plan_predictions(inputs_of(FLUX_SCHNELL), request(output_format="jpeg"))
    assert plan.inputs["output_format"] == "jpg"


def test_an_output_format_the_model_lacks_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="output_format 'gif'") as caught:
        plan_predictions(inputs_of(IMAGEN_4), request(output_format="gif"))
    assert caught.value.field == "output_format"
    assert "jpg, png" in caught.value.message


def test_without_a_schema_width_height_and_num_outputs_are_passed() -> None:
    plans = plan_predictions(None, request(640, 480, 6, seed=3))
    assert [p.inputs for p in plans] == [
        {"prompt": "a cat", "width": 640, "height": 480, "num_outputs": 4},
        {"prompt": "a cat", "width": 640, "height": 480, "num_outputs": 2},
    ]


def test_seeds_wrap_inside_the_seed_maximum() -> None:
    version = cog_version({"prompt": PROMPT, "seed": _int(minimum=0, maximum=10)}, URI)
    plans = plan_predictions(inputs_of(version), request(num_images=3, seed=9))
    assert [p.inputs["seed"] for p in plans] == [9, 10, 0]


@pytest.mark.parametrize(
    ("total", "per", "expected"), [(10, 4, [4, 4, 2]), (4, 4, [4]), (3, 1, [1, 1, 1])]
)
def test_split_count(total: int, per: int, expected: list[int]) -> None:
    assert split_count(total, per) == expected


def test_bounds_without_a_fitting_multiple_fall_back_to_the_clamped_value() -> None:
    assert Bounds(minimum=100, maximum=110, step=64).snap(105) == 105


# --- properties over every image model -------------------------------------------------------

sizes = st.integers(min_value=64, max_value=4096)


def _log_ratio(width: float, height: float) -> float:
    return math.log(width / height)


def _check_nearest(inputs: Mapping[str, Any], sent: Mapping[str, Any], w: int, h: int) -> None:
    target = _log_ratio(w, h)
    if "width" in sent:
        _check_fitted(inputs, sent, w, h)
    elif "size" in sent:
        options = [tuple(map(int, v.split("x"))) for v in inputs["size"]["enum"]]
        best = min(abs(_log_ratio(*o) - target) for o in options)
        chosen = tuple(map(int, sent["size"].split("x")))
        assert abs(_log_ratio(*chosen) - target) <= best + 1e-9
    else:
        ratios = [v for v in inputs["aspect_ratio"]["enum"] if ":" in v]
        best = min(abs(_log_ratio(*map(float, r.split(":"))) - target) for r in ratios)
        chosen = map(float, sent["aspect_ratio"].split(":"))
        assert abs(_log_ratio(*chosen) - target) <= best + 1e-9


def _check_fitted(inputs: Mapping[str, Any], sent: Mapping[str, Any], w: int, h: int) -> None:
    bounds = Bounds.of(inputs["width"])
    low, high = bounds.minimum or 1, bounds.maximum or math.inf
    out_w, out_h = sent["width"], sent["height"]
    assert out_w % bounds.step == 0
    assert out_h % bounds.step == 0
    assert low <= out_w <= high
    assert low <= out_h <= high
    # the nearest aspect ratio the box allows, up to rounding each side to the step
    extreme = math.log(high / low)
    best = min(max(_log_ratio(w, h), -extreme), extreme)
    tolerance = 2 * math.log1p(bounds.step / min(out_w, out_h))
    assert abs(_log_ratio(out_w, out_h) - best) <= tolerance
    if low <= w <= high and low <= h <= high:  # a size the model can make is kept
        assert abs(out_w - w) <= bounds.step / 2
        assert abs(out_h - h) <= bounds.step / 2


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(IMAGE_MODELS)),
    width=sizes,
    height=sizes,
    count=st.integers(min_value=1, max_value=10),
    seed=st.none() | st.integers(min_value=0, max_value=2**31),
)
def test_any_request_maps_to_inputs_the_schema_accepts(
    name: str, width: int, height: int, count: int, seed: int | None
) -> None:
    version = IMAGE_MODELS[name]
    inputs = inputs_of(version)
    plans = plan_predictions(inputs, request(width, height, count, seed=seed))
    check = validator(version)
    assert sum(p.images for p in plans) == count
    for plan in plans:
        assert check.is_valid(dict(plan.inputs)), list(check.iter_errors(dict(plan.inputs)))
        assert set(plan.inputs) <= set(inputs) | {"prompt"}
        _check_nearest(inputs, plan.inputs, width, height)
    if seed is not None and "seed" in inputs:
        assert len({p.inputs["seed"] for p in plans}) == len(plans)


@settings(max_examples=200, deadline=None)
@given(width=sizes, height=sizes, low=st.integers(1, 512), span=st.integers(0, 4096))
def test_fit_dimensions_stays_inside_any_bounds(
    width: int, height: int, low: int, span: int
) -> None:
    bounds = Bounds(minimum=low, maximum=low + span, step=8)
    w, h = fit_dimensions(width, height, bounds, bounds)
    assert low <= w <= low + span
    assert low <= h <= low + span


def test_an_unpinned_community_model_names_its_latest_version() -> None:
    from imagegen.providers.replicate.schema import read_model_schema

    document = {"is_official": False, "latest_version": {"id": "ab" * 32, "openapi_schema": {}}}
    assert read_model_schema(document, pinned=False).community_version == "ab" * 32
    official = {**document, "is_official": True}
    assert read_model_schema(official, pinned=False).community_version is None
    assert read_model_schema(document["latest_version"], pinned=True).community_version is None
