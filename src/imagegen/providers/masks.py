"""Masks speak two dialects, and each upstream gets its own.

OpenAI's edits repaint where the mask is transparent ("fully transparent areas (alpha zero)
indicate where the image should be edited"); Replicate's inpainting models (FLUX Fill, SDXL)
repaint where it is white ("black areas will be preserved, white areas will be inpainted"). A
mask written for one is translated for the other; one already in the upstream's dialect is sent
unchanged. Pure functions over PNG/JPEG/WebP bytes; blocking (call them in a thread). Pillow is
imported when a mask is first translated, not with the providers at start-up.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

_WHITE = 128  # luminance at and above which a pixel counts as white


def has_transparency(data: bytes) -> bool:
    """Whether any pixel of the image is not fully opaque."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
            return False
        extrema = image.convert("RGBA").getchannel("A").getextrema()
        return isinstance(extrema[0], int | float) and extrema[0] < 255


def to_white_repaint(data: bytes) -> bytes | None:
    """An OpenAI-style mask (transparent: repaint) as a black-and-white one (white: repaint);
    None when the mask has no transparency (already black and white)."""
    if not has_transparency(data):
        return None
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        alpha = image.convert("RGBA").getchannel("A")
    return _png(alpha.point(lambda value: 255 if value == 0 else 0))


def to_transparent_repaint(data: bytes) -> bytes | None:
    """A black-and-white mask (white: repaint) as an OpenAI-style one (transparent: repaint);
    None when the mask already has transparency."""
    if has_transparency(data):
        return None
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        luminance = image.convert("L")
    alpha = luminance.point(lambda value: 0 if value >= _WHITE else 255)
    black = Image.new("RGBA", luminance.size, (0, 0, 0, 255))
    black.putalpha(alpha)
    return _png(black)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
