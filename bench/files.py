"""A static file server standing in for ``replicate.delivery``: real 4 MB PNGs, each different.

``GET /img/<n>.png`` answers the same noise image (it does not compress) with a ``tEXt`` chunk
holding ``n``, so every URL is a distinct file: imagegen's content-addressed store cannot skip
the write of one it has already seen. Served by uvicorn on uvloop, like the double.

    python -m bench.files --port 0 --size 4194304    # prints READY <base_url>
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import struct
import zlib

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.double import tcp_socket


def noise_png(size: int) -> bytes:
    """A PNG of random RGB pixels of about ``size`` bytes."""
    side = max(1, int((size / 3) ** 0.5))
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def with_text(png: bytes, text: str) -> bytes:
    """``png`` with a ``tEXt`` chunk after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    head = 8 + 25
    return png[:head] + _chunk(b"tEXt", b"Comment\x00" + text.encode()) + png[head:]


def create_app(size: int) -> Starlette:
    base = noise_png(size)

    async def image(request: Request) -> Response:
        return Response(with_text(base, request.path_params["n"]), media_type="image/png")

    return Starlette(routes=[Route("/img/{n}.png", image)])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.files")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--size", type=int, default=4 * 2**20)
    args = parser.parse_args()
    sock = tcp_socket("127.0.0.1", args.port)
    server = uvicorn.Server(
        uvicorn.Config(create_app(args.size), log_level="warning", lifespan="off")
    )

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        print(f"READY http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
        await task

    import uvloop

    uvloop.run(serve())


if __name__ == "__main__":
    main()
