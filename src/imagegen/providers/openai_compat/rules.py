"""What each upstream model family accepts: sizes, images per request, wire quirks.

One table, matched by model-name prefix; a model it does not name is treated as a free-size
OpenAI-compatible server (Together, LocalAI, vLLM-style): any ``WxH`` multiple of 64 in 256..2048.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

Size = tuple[int, int]

FREE_STEP, FREE_MIN, FREE_MAX = 64, 256, 2048


@dataclass(frozen=True, slots=True)
class ModelRules:
    """How to talk to one model family.

    ``sizes`` is the allowed enum, or ``None`` for free sizes. ``max_n`` is the most images one
    request may ask for. ``b64_only`` models (GPT image) reject ``response_format`` outright.
    ``openai_native`` models reject fields OpenAI does not define (``seed``, ``negative_prompt``).
    ``output_formats`` are the ``output_format`` values the model accepts (empty: do not send).
    """

    sizes: tuple[Size, ...] | None
    max_n: int
    b64_only: bool = False
    openai_native: bool = True
    output_formats: frozenset[str] = frozenset()


DALL_E_2 = ModelRules(sizes=((256, 256), (512, 512), (1024, 1024)), max_n=10)
DALL_E_3 = ModelRules(sizes=((1024, 1024), (1792, 1024), (1024, 1792)), max_n=1)
GPT_IMAGE = ModelRules(
    sizes=((1024, 1024), (1536, 1024), (1024, 1536)),
    max_n=10,
    b64_only=True,
    output_formats=frozenset({"png", "jpeg", "webp"}),
)
FREE_SIZE = ModelRules(sizes=None, max_n=10, openai_native=False)

RULES: tuple[tuple[str, ModelRules], ...] = (
    ("gpt-image-", GPT_IMAGE),
    ("chatgpt-image", GPT_IMAGE),
    ("dall-e-3", DALL_E_3),
    ("dall-e-2", DALL_E_2),
)
"""(model-name prefix, rules), first match wins."""


@lru_cache(maxsize=1024)  # per request otherwise; the names a deployment uses are few
def rules_for(model: str) -> ModelRules:
    name = model.lower()
    return next((rules for prefix, rules in RULES if name.startswith(prefix)), FREE_SIZE)


def _nearest_allowed(allowed: tuple[Size, ...], width: int, height: int) -> Size:
    """The allowed size closest in aspect ratio, then in area (both compared on a log scale)."""
    aspect, area = math.log(width / height), math.log(width * height)

    def distance(size: Size) -> tuple[float, float]:
        w, h = size
        return round(abs(math.log(w / h) - aspect), 9), abs(math.log(w * h) - area)

    return min(allowed, key=distance)


def _free(side: int) -> int:
    snapped = int(side / FREE_STEP + 0.5) * FREE_STEP
    return min(FREE_MAX, max(FREE_MIN, snapped))


@lru_cache(maxsize=1024)  # a few logarithms per request otherwise; sizes asked for repeat
def size_for(rules: ModelRules, width: int, height: int) -> str:
    """The ``size`` string to send for a requested ``width`` x ``height``."""
    if rules.sizes is None:
        return f"{_free(width)}x{_free(height)}"
    w, h = _nearest_allowed(rules.sizes, width, height)
    return f"{w}x{h}"


def batches(total: int, max_n: int) -> list[int]:
    """Split ``total`` images into per-request counts of at most ``max_n``."""
    full, rest = divmod(total, max_n)
    return [max_n] * full + ([rest] if rest else [])
