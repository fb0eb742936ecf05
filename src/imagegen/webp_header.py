"""A WebP file's size from its RIFF container and frame header, without a decoder.

Pillow opens a WebP through libwebp's animation decoder, which allocates the whole canvas (four
bytes a pixel) before it answers anything, and checks no more than the container and the frame
header. For a *simple* WebP (one ``VP8 `` or ``VP8L`` frame, what image models return) those
are read here: the RIFF length must match the bytes there are (a truncated file is refused), the
frame chunk must fill it exactly, and the frame header must be a well-formed key frame whose
dimensions are not zero. An extended WebP (``VP8X``: alpha, animation, metadata) is left to
Pillow, after its canvas size is read from the ``VP8X`` chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Enough of the file for every check here.
HEAD_BYTES = 30

_VP8_START_CODE = b"\x9d\x01\x2a"
_VP8L_SIGNATURE = 0x2F


class MalformedWebP(ValueError):
    """The bytes say they are a WebP but the container or frame header is broken."""


@dataclass(frozen=True, slots=True)
class WebPHeader:
    """``simple``: the header says all there is to check; otherwise (``VP8X``, or a frame chunk
    followed by more) only the size is known and the file is for Pillow to open."""

    width: int
    height: int
    simple: bool


def is_webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def read_webp_header(head: bytes, size: int) -> WebPHeader:
    """The header of a WebP of ``size`` bytes starting with ``head`` (``HEAD_BYTES`` of them, or
    the whole file when it is shorter). Raises ``MalformedWebP``."""
    if len(head) < HEAD_BYTES or not is_webp(head):
        raise MalformedWebP("not a WebP file")
    riff_end = 8 + int.from_bytes(head[4:8], "little")
    if riff_end > size:
        raise MalformedWebP("the file is shorter than its RIFF header says")
    kind = head[12:16]
    chunk_size = int.from_bytes(head[16:20], "little")
    if 20 + chunk_size > riff_end:
        raise MalformedWebP("the first chunk runs past the end of the file")
    # A simple file is its one frame chunk (padded to even): anything after it is for Pillow.
    alone = 20 + chunk_size + (chunk_size & 1) == riff_end
    if kind == b"VP8 ":
        return WebPHeader(*_vp8_size(head, chunk_size), simple=alone)
    if kind == b"VP8L":
        return WebPHeader(*_vp8l_size(head, chunk_size), simple=alone)
    if kind == b"VP8X" and chunk_size >= 10:
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return WebPHeader(width, height, simple=False)
    raise MalformedWebP("unknown WebP chunk")


def _vp8_size(head: bytes, chunk_size: int) -> tuple[int, int]:
    """A lossy key frame: a 3-byte tag (key frame, version, shown, first partition's length),
    the start code, then 14-bit width and height."""
    tag = int.from_bytes(head[20:23], "little")
    key_frame = not tag & 1
    version = (tag >> 1) & 7
    shown = (tag >> 4) & 1
    partition = tag >> 5
    if chunk_size < 10 or not key_frame or version > 3 or not shown or partition >= chunk_size:
        raise MalformedWebP("not a lossy WebP key frame")
    if head[23:26] != _VP8_START_CODE:
        raise MalformedWebP("no VP8 start code")
    width = int.from_bytes(head[26:28], "little") & 0x3FFF
    height = int.from_bytes(head[28:30], "little") & 0x3FFF
    if not width or not height:
        raise MalformedWebP("a zero dimension")
    return width, height


def _vp8l_size(head: bytes, chunk_size: int) -> tuple[int, int]:
    """A lossless frame: the signature byte, then 14-bit width-1 and height-1, the alpha hint
    and a 3-bit version that must be 0."""
    if chunk_size < 5 or head[20] != _VP8L_SIGNATURE:
        raise MalformedWebP("no VP8L signature")
    bits = int.from_bytes(head[21:25], "little")
    if bits >> 29:
        raise MalformedWebP("unknown VP8L version")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
