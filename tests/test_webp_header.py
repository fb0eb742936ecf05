"""A simple WebP is inspected from its header: the same verdict and size as Pillow's, cheaper."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from imagegen.errors import ImageFetchError
from imagegen.ingest import ImageInfo, _inspect_with_pillow, inspect_image
from imagegen.webp_header import HEAD_BYTES, MalformedWebP, read_webp_header

LIMIT = 64 * 1024 * 1024


def webp(size: tuple[int, int], *, alpha: bool = False, **options: object) -> bytes:
    image = Image.effect_noise(size, 60).convert("RGB")
    if alpha:
        image.putalpha(Image.linear_gradient("L").resize(size))
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", **options)
    return buffer.getvalue()


SAMPLES = [
    webp((7, 5)),
    webp((300, 200), quality=10),
    webp((64, 64), lossless=True),
    webp((1, 1), lossless=True),
    webp((33, 17), alpha=True),  # alpha: an extended file (VP8X), for Pillow
]


def pillow_verdict(data: bytes) -> ImageInfo | None:
    try:
        return _inspect_with_pillow(io.BytesIO(data), LIMIT)
    except ImageFetchError:
        return None


def header_verdict(data: bytes) -> ImageInfo | None:
    try:
        return inspect_image(data, LIMIT)
    except ImageFetchError:
        return None


@pytest.mark.parametrize("data", SAMPLES)
def test_the_header_reads_what_pillow_reads(data: bytes) -> None:
    assert header_verdict(data) == pillow_verdict(data) is not None


def test_lossy_and_lossless_files_are_simple_and_alpha_is_not() -> None:
    kinds = [read_webp_header(data[:HEAD_BYTES], len(data)).simple for data in SAMPLES]
    assert kinds == [True, True, True, True, False]


def test_a_truncated_file_is_refused() -> None:
    data = SAMPLES[1]
    with pytest.raises(ImageFetchError, match="not a decodable image"):
        inspect_image(data[: len(data) - 1])
    with pytest.raises(MalformedWebP, match="shorter"):
        read_webp_header(data[:HEAD_BYTES], len(data) - 1)


def test_a_huge_claimed_size_is_refused_before_anything_is_decoded() -> None:
    data = bytearray(SAMPLES[0])
    data[26:30] = (16383).to_bytes(2, "little") * 2  # 16383 x 16383 in the VP8 frame header
    with pytest.raises(ImageFetchError, match="too large to decode safely"):
        inspect_image(bytes(data))
    data[26:30] = (2000).to_bytes(2, "little") * 2
    with pytest.raises(ImageFetchError, match="2000x2000 pixels, more than the 1000 pixel limit"):
        inspect_image(bytes(data), max_pixels=1000)


def test_a_file_on_disk_reads_as_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "image.webp"
    path.write_bytes(SAMPLES[0])
    assert inspect_image(path) == ImageInfo("webp", 7, 5)


@settings(max_examples=300, deadline=None)
@given(
    sample=st.sampled_from(SAMPLES),
    edits=st.lists(st.tuples(st.integers(0, HEAD_BYTES - 1), st.integers(0, 255)), max_size=3),
    keep=st.none() | st.integers(0, 400),
)
def test_a_damaged_header_gets_pillows_verdict(
    sample: bytes, edits: list[tuple[int, int]], keep: int | None
) -> None:
    data = bytearray(sample)
    for index, value in edits:
        data[index] = value
    damaged = bytes(data if keep is None else data[:keep])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        assert header_verdict(damaged) == pillow_verdict(damaged)
