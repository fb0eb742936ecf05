"""Mapping a ``GenerationRequest`` onto a model's own inputs, and splitting it into predictions.

Size, in order of preference:
1. ``width``/``height`` when the model has both: scaled uniformly into the model's bounds (so the
   aspect ratio survives when it can), then rounded to ``multipleOf`` or, lacking one, to a
   multiple of 8 (what diffusion models need; models wanting coarser steps round themselves). An
   ``aspect_ratio``/``size``/``resolution`` enum offering ``custom`` is set to ``custom`` too.
2. a ``size``/``resolution`` enum of ``WxH`` strings: the nearest aspect ratio, then area.
3. an ``aspect_ratio`` enum of ``W:H`` strings: the nearest by |log(w/h) - log(ratio)|, with
   ``megapixels`` (flux) when offered.
Count: ``num_outputs``/``num_images``/``batch_size`` up to its maximum (4 when it declares none);
the rest fans out over more predictions, with ``seed``, ``seed+1``, ... so they differ.
Input images (``image_inputs.py``) go to the inputs the schema names for them, with
``aspect_ratio: "match_input_image"`` when the input's proportions fit the request.
Only keys the schema has are sent, except ``prompt``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from imagegen.errors import InvalidRequest
from imagegen.models import GenerationRequest
from imagegen.providers.replicate.image_inputs import image_inputs, match_input_aspect
from imagegen.providers.replicate.schema import Schema
from imagegen.providers.replicate.sizing import (
    Bounds,
    fit_dimensions,
    nearest_aspect,
    nearest_size,
    number,
    pick_megapixels,
)

DEFAULT_BATCH_MAX = 4
_BATCH_FIELDS = ("num_outputs", "num_images", "batch_size")
_SIZE_ENUMS = ("size", "resolution")
_CUSTOM = "custom"
_FORMAT_ALIASES = {"jpeg": "jpg", "jpg": "jpeg"}


@dataclass(frozen=True, slots=True)
class PlannedPrediction:
    """The inputs of one prediction and how many images it should make."""

    inputs: Mapping[str, Any]
    images: int


def plan_predictions(
    inputs: Mapping[str, Schema] | None,
    request: GenerationRequest,
    images: Mapping[str, Any] | None = None,
    *,
    sizes: SizeInputs | None = None,
) -> list[PlannedPrediction]:
    """The predictions to create for ``request`` on a model with these resolved input properties.

    ``images`` are the input-image values, by the model's input name (``image_inputs.py``
    chose the names). ``inputs=None`` (no readable schema) falls back to ``width``, ``height``
    and ``num_outputs`` (at most 4 a prediction). Raises ``InvalidRequest`` for an
    ``output_format`` the model lacks. ``sizes`` works out the size inputs (``size_inputs``, or
    a ``SizeMemo`` of the model's).
    """
    field: str | None
    if inputs is None:
        base: dict[str, Any] = {"width": request.width, "height": request.height}
        field, per = "num_outputs", DEFAULT_BATCH_MAX
    else:
        base = {**(sizes or size_inputs)(inputs, request.width, request.height)}
        base.update(match_input_aspect(inputs, request))
        base.update(_optional_inputs(inputs, request))
        memo = sizes if isinstance(sizes, SizeMemo) and sizes.covers(inputs) else None
        field, per = memo.batch if memo is not None else batch_field(inputs)
    base.update(images or {})
    plans = []
    for index, count in enumerate(split_count(request.num_images, per)):
        planned = {"prompt": request.prompt, **base}
        if field is not None:
            planned[field] = count
        if inputs is not None:
            planned.update(_seed_input(inputs, request.seed, index))
        plans.append(PlannedPrediction(planned, count))
    return plans


def split_count(total: int, per: int) -> list[int]:
    """``total`` images in predictions of at most ``per``: 10 on 4 -> [4, 4, 2]."""
    per = max(1, per)
    return [per] * (total // per) + ([total % per] if total % per else [])


def batch_field(inputs: Mapping[str, Schema]) -> tuple[str | None, int]:
    """The model's images-per-prediction input and its maximum; ``(None, 1)`` if it has none."""
    for name in _BATCH_FIELDS:
        prop = inputs.get(name)
        if prop is not None and _is_number(prop):
            maximum = number(prop.get("maximum"))
            return name, max(1, int(maximum)) if maximum is not None else DEFAULT_BATCH_MAX
    return None, 1


def size_inputs(inputs: Mapping[str, Schema], width: int, height: int) -> dict[str, Any]:
    """The size-related inputs for a ``width`` x ``height`` target (see the module docstring)."""
    if _is_number(inputs.get("width")) and _is_number(inputs.get("height")):
        w, h = fit_dimensions(
            width, height, Bounds.of(inputs["width"]), Bounds.of(inputs["height"])
        )
        chosen: dict[str, Any] = {"width": w, "height": h}
        for name in ("aspect_ratio", *_SIZE_ENUMS):
            if _CUSTOM in enum_of(inputs.get(name)):
                chosen[name] = _CUSTOM
        return chosen
    for name in _SIZE_ENUMS:
        size = nearest_size(enum_of(inputs.get(name)), width, height)
        if size is not None:
            return {name: size}
    aspect = nearest_aspect(enum_of(inputs.get("aspect_ratio")), width, height)
    if aspect is None:
        return {}
    chosen = {"aspect_ratio": aspect}
    megapixels = pick_megapixels(enum_of(inputs.get("megapixels")), width * height)
    if megapixels is not None:
        chosen["megapixels"] = megapixels
    return chosen


SizeInputs = Callable[[Mapping[str, Schema], int, int], Mapping[str, Any]]


class SizeMemo:
    """``size_inputs`` for one model's ``inputs``, remembered per requested size (``limit`` of
    them): they depend on nothing else, and working them out (each ratio or size of an enum
    parsed and compared) costs more than the rest of a plan. Other inputs are not remembered.
    What every plan reads from the inputs alone is worked out once: ``batch``
    (``batch_field``) and ``images`` (``image_inputs.image_inputs``)."""

    def __init__(self, inputs: Mapping[str, Schema], limit: int = 256) -> None:
        self._inputs = inputs
        self._limit = limit
        self._sizes: dict[tuple[int, int], Mapping[str, Any]] = {}
        self.batch = batch_field(inputs)
        self.images = image_inputs(inputs)

    def covers(self, inputs: Mapping[str, Schema]) -> bool:
        """Whether this is the memo of ``inputs``."""
        return inputs is self._inputs

    def __call__(self, inputs: Mapping[str, Schema], width: int, height: int) -> Mapping[str, Any]:
        if inputs is not self._inputs:
            return size_inputs(inputs, width, height)
        chosen = self._sizes.get((width, height))
        if chosen is None:
            chosen = MappingProxyType(size_inputs(inputs, width, height))
            if len(self._sizes) < self._limit:
                self._sizes[width, height] = chosen
        return chosen


def enum_of(prop: Schema | None) -> list[Any]:
    values = prop.get("enum") if prop is not None else None
    return list(values) if isinstance(values, list) else []


def _optional_inputs(inputs: Mapping[str, Schema], request: GenerationRequest) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    if request.negative_prompt is not None and "negative_prompt" in inputs:
        chosen["negative_prompt"] = request.negative_prompt
    if request.output_format is not None and "output_format" in inputs:
        chosen["output_format"] = _output_format(inputs["output_format"], request)
    return chosen


def _output_format(prop: Schema, request: GenerationRequest) -> Any:
    wanted = str(request.output_format).lower()
    offered = enum_of(prop)
    if not offered:
        return wanted
    for candidate in (wanted, _FORMAT_ALIASES.get(wanted)):
        for value in offered:
            if isinstance(value, str) and value.lower() == candidate:
                return value
    raise InvalidRequest(
        f"output_format {request.output_format!r} is not offered by {request.model}; "
        f"choose one of: {', '.join(map(str, offered))}",
        field="output_format",
    )


def _seed_input(inputs: Mapping[str, Schema], seed: int | None, index: int) -> dict[str, Any]:
    """``seed + index`` for the index-th prediction, wrapped into the seed's bounds if any."""
    if seed is None or "seed" not in inputs:
        return {}
    bounds = Bounds.of(inputs["seed"])
    value = seed + index
    if bounds.maximum is not None and value > bounds.maximum:
        low = int(bounds.minimum or 0)
        value = low + (value - low) % (int(bounds.maximum) - low + 1)
    return {"seed": value}


def _is_number(prop: Schema | None) -> bool:
    """A numeric input (or one without a declared type)."""
    return prop is not None and prop.get("type") in (None, "integer", "number")
