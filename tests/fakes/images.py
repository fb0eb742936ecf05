"""Tiny real images for tests: decodable PNG / WEBP / JPEG bytes of an exact pixel size.

The bytes stay small (a solid colour, or a one-direction gradient, compresses to a few KB even
at 1440x1440) while the pixel dimensions are whatever the caller asks for, so code that checks
decoded sizes sees the truth.
"""

from __future__ import annotations

import io
from functools import lru_cache

from PIL import Image

#: Our format name -> (Pillow format, MIME type). ``jpg`` and ``jpeg`` are the same thing.
FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", "image/png"),
    "jpg": ("JPEG", "image/jpeg"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}

#: Distinct, easily told apart colours; ``palette_color(i)`` cycles through them.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (220, 60, 60),
    (60, 160, 80),
    (60, 90, 210),
    (230, 180, 40),
    (150, 70, 190),
    (40, 180, 190),
    (240, 120, 30),
    (120, 120, 120),
)


def mime_type(fmt: str) -> str:
    """``"webp"`` -> ``"image/webp"``; raises ``KeyError`` for an unknown format."""
    return FORMATS[fmt.lower()][1]


def palette_color(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


@lru_cache(maxsize=64)
def make_image(
    width: int,
    height: int,
    fmt: str = "png",
    color: tuple[int, int, int] = PALETTE[0],
    *,
    gradient: bool = False,
) -> bytes:
    """Encoded image bytes of exactly ``width`` x ``height`` pixels (cached: the result is shared).

    ``gradient=True`` fades ``color`` to black left to right (still tiny, but not uniform).
    """
    pil_format, _ = FORMATS[fmt.lower()]
    image = Image.new("RGB", (width, height), color)
    if gradient:
        ramp = Image.linear_gradient("L").rotate(90).resize((width, height))
        image = Image.composite(image, Image.new("RGB", (width, height)), ramp)
    buffer = io.BytesIO()
    if pil_format == "WEBP":
        image.save(buffer, pil_format, quality=80, method=0)
    elif pil_format == "PNG":
        image.save(buffer, pil_format, compress_level=1)
    else:
        image.save(buffer, pil_format, quality=80)
    return buffer.getvalue()


def image_info(data: bytes) -> tuple[str, int, int]:
    """Decode ``data`` fully and return ``(format, width, height)``, format as ``png|jpg|webp``.

    Raises ``PIL.UnidentifiedImageError`` (an ``OSError``) when the bytes are not an image.
    """
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        name = (image.format or "").lower()
        return ("jpg" if name == "jpeg" else name), image.width, image.height
