"""Which of a model's inputs take the request's images, read from the model's own schema.

- The image goes to the first of ``IMAGE_FIELDS`` the model declares as a URI (or a list of
  URIs), else to any other URI input whose name says ``image``; the mask to ``mask`` (or
  ``mask_image``). Several images need a list input.
- A model with no such input, called with an image, or one that requires an image, called
  without, is ``UnsupportedModel`` (422): decided from the schema, before any prediction.
- ``aspect_ratio: "match_input_image"`` (FLUX Kontext) is chosen when the input image's aspect
  ratio is at least as close to the requested one as every ratio the model offers: the output
  then keeps the input's proportions, as an edit should.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imagegen.errors import InvalidRequest, UnsupportedModel
from imagegen.models import GenerationRequest
from imagegen.providers.replicate.schema import ModelSchema, Schema
from imagegen.providers.replicate.sizing import parse_ratio

IMAGE_FIELDS = (
    "input_image",
    "image",
    "image_prompt",
    "control_image",
    "input_images",
    "image_input",
    "init_image",
    "reference_image",
    "start_image",
)
MASK_FIELDS = ("mask", "mask_image")
MATCH_INPUT = "match_input_image"


@dataclass(frozen=True, slots=True)
class ImageFields:
    """Where the request's images go: ``image`` (a list input when ``many``) and ``mask``."""

    image: str | None = None
    many: bool = False
    mask: str | None = None


ImageInputs = tuple[str | None, bool, str | None]


def image_inputs(inputs: Mapping[str, Schema]) -> ImageInputs:
    """The model's input for images (a list input when the second is true) and for a mask, if
    any: all ``image_fields`` reads from the schema, the same for every request."""
    image, many = _image_field(inputs)
    mask = next((name for name in MASK_FIELDS if _is_uri(inputs.get(name))), None)
    return image, many, mask


_NONE = ImageFields()


def image_fields(
    schema: ModelSchema, request: GenerationRequest, found: ImageInputs | None = None
) -> ImageFields:
    """The model's inputs for the request's images; raises ``UnsupportedModel`` (see the module
    docstring) or ``InvalidRequest`` (several images for a model that takes one). ``found``:
    ``image_inputs(schema.inputs)``, worked out before."""
    inputs = schema.inputs
    if inputs is None:  # no readable schema: the common names, and the create will tell
        return ImageFields("image" if request.images else None, False, _mask_or_none(request))
    image, many, mask = found if found is not None else image_inputs(inputs)
    model = request.model
    if request.images and image is None:
        raise UnsupportedModel(f"Replicate model {model} takes no input image", model=model)
    if not request.images and image is not None and image in schema.required:
        raise UnsupportedModel(
            f"Replicate model {model} needs an input image (its {image!r} input): send image",
            model=model,
        )
    if request.mask is not None and mask is None:
        raise UnsupportedModel(f"Replicate model {model} takes no mask", model=model)
    if len(request.images) > 1 and not many:
        raise InvalidRequest(
            f"image: Replicate model {model} takes one input image, not {len(request.images)}",
            field="image",
        )
    if not request.images and request.mask is None and not many:
        return _NONE  # nothing to place: the same answer for every such request
    return ImageFields(image if request.images else None, many, _mask_or_none(request, mask))


def _mask_or_none(request: GenerationRequest, name: str | None = "mask") -> str | None:
    return name if request.mask is not None else None


def _image_field(inputs: Mapping[str, Schema]) -> tuple[str | None, bool]:
    named = [name for name in IMAGE_FIELDS if name in inputs]
    others = [name for name in inputs if "image" in name.lower() and name not in MASK_FIELDS]
    for name in (*named, *others):
        prop = inputs[name]
        if _is_uri(prop):
            return name, False
        if prop.get("type") == "array" and _is_uri(prop.get("items")):
            return name, True
    return None, False


def _is_uri(prop: Any) -> bool:
    return (
        isinstance(prop, Mapping) and prop.get("type") == "string" and prop.get("format") == "uri"
    )


def match_input_aspect(inputs: Mapping[str, Schema], request: GenerationRequest) -> dict[str, Any]:
    """``{"aspect_ratio": "match_input_image"}`` when the model offers it and the first input
    image's proportions fit the request best; else nothing."""
    prop = inputs.get("aspect_ratio")
    offered = prop.get("enum") if prop is not None else None
    if not request.images or not isinstance(offered, list) or MATCH_INPUT not in offered:
        return {}
    first = request.images[0]
    target = math.log(request.width / request.height)
    mismatch = abs(math.log(first.width / first.height) - target)
    ratios = [ratio for value in offered if (ratio := parse_ratio(value)) is not None]
    if all(mismatch <= abs(math.log(ratio) - target) + 1e-9 for ratio in ratios):
        return {"aspect_ratio": MATCH_INPUT}
    return {}
