#!/usr/bin/env python3
"""Tiny fake OpenAI-compatible image-generation upstream, for gateway benchmarks.

Endpoints
  POST /v1/images/generations   (also /images/generations)
        body: {"prompt":..., "model":..., "n":1, "response_format":"url"|"b64_json", "size":...}
        -> {"created": <unix>,
            "data":[{"url": "http://HOST:PORT/img/<n>.png", "revised_prompt": ...}]}
           or data[i].b64_json when response_format == "b64_json"
        Sleeps --delay-ms (default 0) before answering (asyncio.sleep: no CPU held).
        Per-request override: header "X-Fake-Delay-Ms: <ms>" (only if the gateway forwards it).
  GET  /img/<anything>.png      a small valid PNG (64x64 RGB, ~ 200 bytes)
  GET  /v1/models, /health       for gateway health checks
  GET  /_fake/stats              counters (requests, in-flight, peak in-flight)
  POST /_fake/config?delay_ms=N  change the delay at runtime (no restart needed)
  POST /_fake/reset              reset counters

Run:  python fake_images_server.py --port 18080 --delay-ms 0
Needs aiohttp (uvloop used if importable).
"""

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import struct
import time
import zlib

from aiohttp import web


def make_png(w=64, h=64, rgb=(200, 80, 40)):
    def chunk(tag, data):
        c = tag + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


PNG = make_png()
PNG_B64 = base64.b64encode(PNG).decode()


class State:
    def __init__(self, delay_ms, public_base):
        self.delay_ms = delay_ms
        self.public_base = public_base
        self.counter = itertools.count(1)
        self.requests = 0
        self.inflight = 0
        self.peak_inflight = 0
        self.bad = 0


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


async def generations(request: web.Request):
    st: State = request.app["st"]
    st.requests += 1
    st.inflight += 1
    if st.inflight > st.peak_inflight:
        st.peak_inflight = st.inflight
    try:
        try:
            body = await request.json()
        except Exception:
            st.bad += 1
            return web.json_response(
                {"error": {"message": "invalid JSON body", "type": "invalid_request_error"}},
                status=400,
            )
        if not isinstance(body, dict) or not body.get("prompt"):
            st.bad += 1
            return web.json_response(
                {"error": {"message": "'prompt' is required", "type": "invalid_request_error"}},
                status=400,
            )
        delay = st.delay_ms
        hdr = request.headers.get("X-Fake-Delay-Ms")
        if hdr:
            with contextlib.suppress(ValueError):
                delay = float(hdr)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)
        try:
            n = max(1, min(int(body.get("n") or 1), 10))
        except (TypeError, ValueError):
            n = 1
        fmt = body.get("response_format") or "url"
        data = []
        for _ in range(n):
            i = next(st.counter)
            if fmt == "b64_json":
                data.append({"b64_json": PNG_B64, "revised_prompt": body["prompt"]})
            else:
                data.append(
                    {"url": f"{st.public_base}/img/{i}.png", "revised_prompt": body["prompt"]}
                )
        return web.Response(
            text=dumps({"created": int(time.time()), "data": data}), content_type="application/json"
        )
    finally:
        st.inflight -= 1


async def img(request: web.Request):
    return web.Response(body=PNG, content_type="image/png")


async def models(request: web.Request):
    return web.json_response(
        {
            "object": "list",
            "data": [{"id": "fake-image-model", "object": "model", "owned_by": "fake"}],
        }
    )


async def health(request: web.Request):
    return web.json_response({"status": "ok"})


async def stats(request: web.Request):
    st: State = request.app["st"]
    return web.json_response(
        {
            "pid": os.getpid(),
            "delay_ms": st.delay_ms,
            "requests": st.requests,
            "inflight": st.inflight,
            "peak_inflight": st.peak_inflight,
            "bad_requests": st.bad,
        }
    )


async def config(request: web.Request):
    st: State = request.app["st"]
    if "delay_ms" in request.query:
        st.delay_ms = float(request.query["delay_ms"])
    return web.json_response({"delay_ms": st.delay_ms})


async def reset(request: web.Request):
    st: State = request.app["st"]
    st.requests = st.peak_inflight = st.bad = 0
    return web.json_response({"ok": True})


def build_app(delay_ms, public_base):
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app["st"] = State(delay_ms, public_base)
    app.router.add_post("/v1/images/generations", generations)
    app.router.add_post("/images/generations", generations)
    app.router.add_get("/img/{name}", img)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/_fake/stats", stats)
    app.router.add_post("/_fake/config", config)
    app.router.add_post("/_fake/reset", reset)
    return app


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("FAKE_PORT", 18080)))
    ap.add_argument("--delay-ms", type=float, default=float(os.environ.get("FAKE_DELAY_MS", 0)))
    ap.add_argument("--public-base", default=None, help="base URL used in returned image URLs")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except Exception:
        pass
    public_base = args.public_base or f"http://{args.host}:{args.port}"
    web.run_app(
        build_app(args.delay_ms, public_base),
        host=args.host,
        port=args.port,
        access_log=None,
        backlog=4096,
        print=lambda *a: print(
            f"fake images server on {public_base} delay_ms={args.delay_ms} pid={os.getpid()}",
            flush=True,
        ),
    )


if __name__ == "__main__":
    main()
