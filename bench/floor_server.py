"""``python -m bench.floor_server --kind asgi|fastapi|design``: the least an inbound request, and a
whole generation in imagegen's design, can cost.

A server with none of imagegen's code, on the stack imagegen serves with (uvicorn with httptools
and uvloop, no access log): ``POST /generate`` reads a JSON body like the seed's, parses it and
answers a JSON reply of the seed's shape; ``GET`` of any path answers a few KB of bytes, as an
image host does (the outbound floor's download).

- ``asgi``: a bare ASGI callable (``json`` in, ``json`` out): the server's own floor.
- ``fastapi``: the same route in FastAPI, the body a pydantic model, the reply a
  ``response_model``: the framework's floor, before anything imagegen does per request.
- ``design`` (``--upstream URL --token T --database PATH``): a whole generation on the seed
  endpoint with provider URLs passed through, as imagegen's design does it and with nothing
  else: the bare ASGI app's request, its body validated by a pydantic model in one step; the
  job written running with the create about to be sent, in one durable transaction
  (``sqlite3``: WAL, ``synchronous=NORMAL``, ``BEGIN IMMEDIATE``, on the event loop); a
  sync-mode create on the Replicate API through aiohttp; then, in a second transaction, its
  prediction recorded, the pending create cleared and the job succeeded; the reply names the
  output's URL. No keys, limits, metrics, logs, events, leases, recovery, catalog or schema
  mapping: the least this design costs, whatever code runs it.

Prints ``READY <base_url>`` once it listens.
"""

from __future__ import annotations

import argparse
import json
import socket
import sqlite3
import uuid
from datetime import UTC, datetime
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
    request = json.loads(await read_body(receive))
    await send_json(send, dict(REPLY, prompt=request["prompt"], model=request["model"]))


async def read_body(receive: Any) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def send_json(send: Any, reply: dict[str, Any]) -> None:
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


SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, status TEXT, request TEXT,"
    " created_at TEXT, started_at TEXT, completed_at TEXT, provider_urls TEXT)",
    "CREATE TABLE IF NOT EXISTS pending (job_id TEXT, inputs TEXT, sent_at TEXT)",
    "CREATE INDEX IF NOT EXISTS pending_job ON pending (job_id)",
    "CREATE TABLE IF NOT EXISTS predictions (id TEXT PRIMARY KEY, job_id TEXT, inputs TEXT)",
)


def design(upstream: str, token: str, database: str) -> Any:
    """The ``design`` kind's app (see the module's description)."""
    import aiohttp

    db = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for statement in SCHEMA:
        db.execute(statement)

    def write(*statements: tuple[str, tuple[Any, ...]]) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, values in statements:
                db.execute(sql, values)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    sessions: list[aiohttp.ClientSession] = []
    headers = {"Authorization": f"Bearer {token}", "Prefer": "wait=10"}
    headers["Content-Type"] = "application/json"
    url = f"{upstream}/v1/models/black-forest-labs/flux-schnell/predictions"

    async def generate(body: Body) -> dict[str, Any]:
        if not sessions:
            sessions.append(aiohttp.ClientSession())
        job, now = f"gen_{uuid.uuid4().hex}", datetime.now(UTC).isoformat()
        inputs = {"prompt": body.prompt, "num_outputs": body.num_images}
        inputs["aspect_ratio"] = "1:1"
        text = json.dumps(inputs)
        write(
            (
                "INSERT INTO jobs (id, status, request, created_at, started_at) VALUES"
                " (?, 'running', ?, ?, ?)",
                (job, body.model_dump_json(), now, now),
            ),
            ("INSERT INTO pending (job_id, inputs, sent_at) VALUES (?, ?, ?)", (job, text, now)),
        )
        payload = json.dumps({"input": inputs})
        async with sessions[0].post(url, data=payload, headers=headers) as reply:
            prediction = json.loads(await reply.read())
        output = prediction["output"]
        urls = output if isinstance(output, list) else [output]
        done = datetime.now(UTC).isoformat()
        write(
            (
                "INSERT INTO predictions (id, job_id, inputs) VALUES (?, ?, ?)",
                (prediction["id"], job, text),
            ),
            ("DELETE FROM pending WHERE job_id = ?", (job,)),
            (
                "UPDATE jobs SET status = 'succeeded', completed_at = ?, provider_urls = ?"
                " WHERE id = ? AND status = 'running'",
                (done, json.dumps(urls), job),
            ),
        )
        return {"image_urls": urls, "prompt": body.prompt, "model": body.model, "id": job}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = Body.model_validate_json(await read_body(receive))
        await send_json(send, await generate(body))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("asgi", "fastapi", "design"), default="asgi")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", help="design: the Replicate API's base URL")
    parser.add_argument("--token", default="", help="design: its API token")
    parser.add_argument("--database", default=":memory:", help="design: the SQLite file")
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    if args.kind == "design":
        app = design(args.upstream, args.token, args.database)
    else:
        app = bare if args.kind == "asgi" else framework()
    config = uvicorn.Config(
        app, http="httptools", loop="uvloop", access_log=False, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    print(f"READY http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    server.run(sockets=[listener])


if __name__ == "__main__":
    main()
