"""Properties of the model-input mapping over arbitrary Cog-style input schemas.

``tests/providers/test_replicate_schema.py`` checks the mapping on the models Replicate really
serves. Here Hypothesis invents the models: any mix of width/height bounds and steps, size and
aspect-ratio enums, batch fields with or without a maximum, bounded or unbounded seeds, and
optional ``negative_prompt`` and ``output_format`` inputs; and any request within imagegen's
default bounds. Whatever the model, the planned predictions must add up to the images asked
for, each must validate against the model's own schema, and nothing the model lacks is sent.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from imagegen.errors import InvalidRequest
from imagegen.models import GenerationRequest
from imagegen.providers.replicate.mapping import SizeMemo, plan_predictions

RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9", "9:21", "5:4", "4:5"]
SIZES = ["1024x1024", "1365x1024", "1024x1365", "1536x1024", "1024x1536", "512x512", "768x1344"]
FORMATS = ["webp", "jpg", "png"]
BATCH_FIELDS = ["num_outputs", "num_images", "batch_size"]


@st.composite
def width_height(draw: st.DrawFn) -> dict[str, Any]:
    step = draw(st.sampled_from([None, 8, 16, 32, 64]))
    low = draw(st.integers(1, 1024))
    high = draw(st.integers(low, 4096))
    if step is not None:  # a model whose step fits nowhere in its bounds is not one we model
        assume(-(-low // step) * step <= high)
    side = {"type": "integer", "minimum": low, "maximum": high}
    if step is not None:
        side["multipleOf"] = step
    props: dict[str, Any] = {"width": dict(side), "height": dict(side)}
    if draw(st.booleans()):
        ratios = draw(st.lists(st.sampled_from(RATIOS), min_size=1, max_size=4, unique=True))
        props["aspect_ratio"] = {"type": "string", "enum": [*ratios, "custom"]}
    return props


@st.composite
def input_schemas(draw: st.DrawFn) -> dict[str, Any]:
    """The ``properties`` of a model's ``Input`` schema, enums inline (as after resolving)."""
    props: dict[str, Any] = {"prompt": {"type": "string"}}
    style = draw(st.sampled_from(["width_height", "size", "aspect_ratio", "none"]))
    if style == "width_height":
        props.update(draw(width_height()))
    elif style == "size":
        sizes = draw(st.lists(st.sampled_from(SIZES), min_size=1, max_size=5, unique=True))
        props["size"] = {"type": "string", "enum": sizes}
    elif style == "aspect_ratio":
        ratios = draw(st.lists(st.sampled_from(RATIOS), min_size=1, max_size=8, unique=True))
        props["aspect_ratio"] = {"type": "string", "enum": ratios}
        if draw(st.booleans()):
            props["megapixels"] = {"type": "string", "enum": ["1", "0.25"]}
    batch = draw(st.sampled_from([None, *BATCH_FIELDS]))
    if batch is not None:
        props[batch] = {"type": "integer", "minimum": 1}
        maximum = draw(st.none() | st.integers(1, 8))
        if maximum is not None:
            props[batch]["maximum"] = maximum
    if draw(st.booleans()):
        props["seed"] = {"type": "integer"}
        if draw(st.booleans()):
            props["seed"].update(minimum=0, maximum=draw(st.sampled_from([9, 2**16, 2**32 - 1])))
    if draw(st.booleans()):
        props["negative_prompt"] = {"type": "string"}
    if draw(st.booleans()):
        offered = draw(st.lists(st.sampled_from(FORMATS), min_size=1, max_size=3, unique=True))
        props["output_format"] = {"type": "string", "enum": offered}
    return props


requests = st.builds(
    GenerationRequest,
    model=st.just("owner/model"),
    prompt=st.text(min_size=1, max_size=40),
    num_images=st.integers(1, 10),
    width=st.integers(64, 4096),
    height=st.integers(64, 4096),
    seed=st.none() | st.integers(0, 2**32 - 1),
    negative_prompt=st.none() | st.text(max_size=20),
    output_format=st.none() | st.sampled_from(["png", "jpg", "jpeg", "webp"]),
)


def _offers(props: dict[str, Any], wanted: str) -> bool:
    aliases = {"jpeg": {"jpeg", "jpg"}, "jpg": {"jpg", "jpeg"}}.get(wanted, {wanted})
    return bool(aliases & set(props["output_format"]["enum"]))


@settings(max_examples=300, deadline=None)
@given(props=input_schemas(), request=requests)
def test_any_model_gets_inputs_its_schema_accepts(
    props: dict[str, Any], request: GenerationRequest
) -> None:
    wanted = request.output_format
    if wanted is not None and "output_format" in props and not _offers(props, wanted):
        with pytest.raises(InvalidRequest) as refused:
            plan_predictions(props, request)
        assert refused.value.field == "output_format"
        return
    plans = plan_predictions(props, request)
    schema = {"type": "object", "properties": props, "required": ["prompt"]}
    validator = jsonschema_rs.validator_for(schema)
    batch = next((name for name in BATCH_FIELDS if name in props), None)

    assert sum(plan.images for plan in plans) == request.num_images
    for plan in plans:
        inputs = dict(plan.inputs)
        assert validator.is_valid(inputs), list(validator.iter_errors(inputs))
        assert set(inputs) <= set(props)
        assert inputs["prompt"] == request.prompt
        if batch is None:
            assert plan.images == 1
        else:
            assert inputs[batch] == plan.images
        sent_negative = request.negative_prompt is not None and "negative_prompt" in props
        assert ("negative_prompt" in inputs) == sent_negative
        assert ("output_format" in inputs) == (wanted is not None and "output_format" in props)
    if request.seed is not None and "seed" in props:
        seeds = [plan.inputs["seed"] for plan in plans]
        assert len(set(seeds)) == min(len(seeds), props["seed"].get("maximum", 2**40) + 1)
    else:
        assert all("seed" not in plan.inputs for plan in plans)


@settings(max_examples=200, deadline=None)
@given(props=input_schemas(), request=requests, other=requests)
def test_a_models_size_memo_plans_what_the_plain_mapping_plans(
    props: dict[str, Any], request: GenerationRequest, other: GenerationRequest
) -> None:
    memo = SizeMemo(props, limit=1)
    copy = {**props}  # another model's inputs: not the memo's to remember
    for asked, inputs in [(request, props), (other, props), (request, props), (other, copy)]:
        try:
            plain = plan_predictions(props, asked)
        except InvalidRequest:
            with pytest.raises(InvalidRequest):
                plan_predictions(inputs, asked, sizes=memo)
            continue
        assert plan_predictions(inputs, asked, sizes=memo) == plain
