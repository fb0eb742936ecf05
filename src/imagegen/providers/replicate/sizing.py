"""Choosing a size a model can make: snapping to bounds and steps, nearest ratio, nearest WxH.

Pure functions over plain values; ``mapping.py`` decides which of them a model's schema calls for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imagegen.providers.replicate.schema import Schema

DEFAULT_STEP = 8
MEGAPIXEL = 1024 * 1024  # flux's "1" megapixel is 1024x1024
# notes §4.8: the smaller megapixels option below ~0.4 MP, i.e. unless the larger one is within
# 2.5x of the target area.
MEGAPIXEL_OVERSHOOT = 2.5
_RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")
_WXH = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")
# Cog schemas often state the step only in prose ("Must be a multiple of 32 (if it's not, it
# will be rounded ...)", flux-1.1-pro): read it from the field's own description as a fallback.
_DESCRIBED_STEP = re.compile(r"multiple of (\d+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Bounds:
    """What one integer size input accepts."""

    minimum: float | None = None
    maximum: float | None = None
    step: int = DEFAULT_STEP

    @classmethod
    def of(cls, prop: Schema) -> Bounds:
        step = number(prop.get("multipleOf"))
        if step is None:
            step = described_step(prop.get("description"))
        valid_step = step is not None and step >= 1 and step.is_integer()
        return cls(
            number(prop.get("minimum")),
            number(prop.get("maximum")),
            int(step) if step is not None and valid_step else DEFAULT_STEP,
        )

    def snap(self, value: float) -> int:
        """The multiple of ``step`` nearest ``value`` inside the bounds (or the clamped value)."""
        snapped = max(self.step, round(value / self.step) * self.step)
        if self.maximum is not None and snapped > self.maximum:
            snapped = math.floor(self.maximum / self.step) * self.step
        if self.minimum is not None and snapped < self.minimum:
            snapped = math.ceil(self.minimum / self.step) * self.step
        if snapped <= 0 or (self.maximum is not None and snapped > self.maximum):
            return round(self.clamp(value))  # no multiple of step fits
        return int(snapped)

    def clamp(self, value: float) -> float:
        low = self.minimum if self.minimum is not None else 1.0
        high = self.maximum if self.maximum is not None else math.inf
        return min(max(value, low), high)


def described_step(description: Any) -> float | None:
    match = _DESCRIBED_STEP.search(description) if isinstance(description, str) else None
    return float(match.group(1)) if match else None


def fit_dimensions(width: int, height: int, w_bounds: Bounds, h_bounds: Bounds) -> tuple[int, int]:
    """Scale uniformly into the bounds when possible (else the extreme aspect), then snap."""
    low = max((b.minimum or 0) / v for b, v in ((w_bounds, width), (h_bounds, height)))
    high = min((b.maximum or math.inf) / v for b, v in ((w_bounds, width), (h_bounds, height)))
    scale = min(max(1.0, low), high) if low <= high else high
    w = w_bounds.snap(w_bounds.clamp(width * scale))
    h = h_bounds.snap(h_bounds.clamp(height * scale))
    return w, h


def nearest_aspect(values: Sequence[Any], width: int, height: int) -> Any:
    """The ``W:H`` value nearest ``width/height`` in log ratio (first wins ties); None if none."""
    target = math.log(width / height)
    scored = [
        (abs(math.log(ratio) - target), index, value)
        for index, value in enumerate(values)
        if (ratio := parse_ratio(value)) is not None
    ]
    return min(scored)[2] if scored else None


def nearest_size(values: Sequence[Any], width: int, height: int) -> Any:
    """The ``WxH`` value with the nearest aspect ratio, then the nearest area; None if none."""
    aspect, area = math.log(width / height), math.log(width * height)
    scored = []
    for index, value in enumerate(values):
        size = parse_size(value)
        if size is not None:
            w, h = size
            aspect_error = round(abs(math.log(w / h) - aspect), 9)
            scored.append((aspect_error, abs(math.log(w * h) - area), index, value))
    return min(scored)[3] if scored else None


def pick_megapixels(values: Sequence[Any], area: int) -> Any:
    """The largest option within ``MEGAPIXEL_OVERSHOOT`` x the target area, else the smallest."""
    options = [(float(v), i, v) for i, v in enumerate(values) if number(v) is not None]
    if not options:
        return None
    fitting = [o for o in options if o[0] <= MEGAPIXEL_OVERSHOOT * area / MEGAPIXEL]
    return (max(fitting) if fitting else min(options))[2]


def parse_ratio(value: Any) -> float | None:
    match = _RATIO.match(value) if isinstance(value, str) else None
    if match is None or float(match[1]) <= 0 or float(match[2]) <= 0:
        return None
    return float(match[1]) / float(match[2])


def parse_size(value: Any) -> tuple[int, int] | None:
    match = _WXH.match(value) if isinstance(value, str) else None
    if match is None or int(match[1]) <= 0 or int(match[2]) <= 0:
        return None
    return int(match[1]), int(match[2])


def number(value: Any) -> float | None:
    """A finite float from an int, float or numeric string; None otherwise (bools included)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        result = float(value)
    except ValueError:
        return None
    return result if math.isfinite(result) else None
