"""``python -m bench.floor_server --kind asgi|fastapi``: the least an inbound request can cost.

A server with none of imagegen's code, on the stack imagegen serves with (uvicorn with httptools
and uvloop, no access log): ``POST /generate`` reads a JSON body like the seed's, parses it and
answers a JSON reply of the seed's shape; ``GET`` of any path answers a few KB of bytes, as an
image host does (the outbound floor's download).

- ``asgi``: a bare ASGI callable (``json`` in, ``json`` out): the server's own floor.
- ``fastapi``: the same route in FastAPI, the body a pydantic model, the reply a
  ``response_model``: the framework's floor, before anything imagegen does per request.

Prints ``READY <base_url>`` once it listens.
"""

from __future__ import annotations

import argparse
import json
import socket
from typing import Any

import uvicorn
from pydantic import BaseModel, Field

REPLY = {
    "image_urls": ["http://127.0.0.1:8000/images/0123456789abcdef0123456789abcdef.webp"],
    "prompt": "a lighthouse in a storm",
    "model": "black-forest-labs/flux-schnell",
    "id": "gen_0123456789abcdef",
}
#: What ``GET`` answers: about as many bytes as the Replicate double's 512x512 WebP (~1 KB).
IMAGE = bytes(range(256)) * 4


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":  # a download: the bytes of a small image
        headers = [(b"content-type", b"image/webp"), (b"content-length", b"%d" % len(IMAGE))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": IMAGE})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    request = json.loads(body)
    reply = dict(REPLY, prompt=request["prompt"], model=request["model"])
    payload = json.dumps(reply).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Body(BaseModel):
    model: str
    prompt: str = Field(min_length=1)
    num_images: int = Field(1, ge=1, le=4)
    width: int = Field(1024, ge=64, le=2048)
    height: int = Field(1024, ge=64, le=2048)


class Reply(BaseModel):
    image_urls: list[str]
    prompt: str
    model: str
    id: str


def framework() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/generate", response_model=Reply)
    async def generate(body: Body) -> Reply:
        return Reply(**dict(REPLY, prompt=body.prompt, model=body.model))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("asgi", "fastapi"), default="asgi")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    app = bare if args.kind == "asgi" else framework()
    config = uvicorn.Config(
        app, http="httptools", loop="uvloop", access_log=False, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    print(f"READY http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    server.run(sockets=[listener])


if __name__ == "__main__":
    main()
