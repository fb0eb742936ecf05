"""Masks translated between OpenAI's dialect (transparent: repaint) and Replicate's (white:
repaint)."""

from __future__ import annotations

import io

from PIL import Image
from tests.fakes.images import make_image

from imagegen.providers.masks import has_transparency, to_transparent_repaint, to_white_repaint


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def half_clear(width: int = 8, height: int = 4) -> bytes:
    """Opaque black, its left half fully transparent: 'repaint the left half', OpenAI's way."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    return png(image)


def half_white(width: int = 8, height: int = 4) -> bytes:
    """Black, its left half white: 'repaint the left half', Replicate's way."""
    image = Image.new("RGB", (width, height), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, width // 2, height))
    return png(image)


def luminance(data: bytes) -> list[int]:
    with Image.open(io.BytesIO(data)) as image:
        return list(image.convert("L").tobytes())


def alpha(data: bytes) -> list[int]:
    with Image.open(io.BytesIO(data)) as image:
        return list(image.convert("RGBA").getchannel("A").tobytes())


def test_an_openai_mask_becomes_white_where_it_was_clear() -> None:
    converted = to_white_repaint(half_clear())
    assert converted is not None
    assert luminance(converted) == luminance(half_white())


def test_a_black_and_white_mask_becomes_clear_where_it_was_white() -> None:
    converted = to_transparent_repaint(half_white())
    assert converted is not None
    assert alpha(converted) == [0 if white == 255 else 255 for white in luminance(half_white())]


def test_a_mask_already_in_the_dialect_is_left_alone() -> None:
    assert to_white_repaint(half_white()) is None
    assert to_transparent_repaint(half_clear()) is None
    assert not has_transparency(make_image(8, 8))
    assert has_transparency(half_clear())
    assert not has_transparency(png(Image.new("RGBA", (4, 4), (9, 9, 9, 255))))
