"""A faithful stand-in for the OpenAI Images API (and OpenAI-compatible servers), over real HTTP.

Serves ``POST /v1/images/generations``, ``POST /v1/images/edits`` (``openai_edits``),
``GET /v1/models[/{id}]`` and ``GET /files/<id>.<ext>``
(the expiring URLs that ``response_format=url`` returns). Model rules live in ``openai_models``.

Test control, without auth, under ``/_double/``:

- ``GET  /_double/stats``  -> ``{"calls": {model: n}, "total_calls": n, "requests": [body, ...],
  "pending_faults": n}``
- ``POST /_double/reset``  -> clears stats, scripted faults and files
- ``POST /_double/script`` with ``{"faults": [{"kind": ..., ...}]}``: one-shot faults, consumed in
  order by the next generation requests (optionally only those for ``model``; ``times`` repeats).
  Kinds: ``content_policy`` (400), ``rate_limit`` (429, ``retry_after`` s / ``retry_after_ms``),
  ``server_error`` (``status``, default 500), ``slow`` (``delay`` s, then a normal reply),
  ``empty`` (200, ``data: []``), ``malformed`` (200, truncated JSON), ``oversize`` (200, a JSON
  body of ``size`` bytes, default 100 MB, streamed: never held whole), ``echo_key`` (401 whose
  message repeats the credential it was sent, unmasked). ``retry_after_raw`` sends that exact
  ``retry-after`` header with a ``rate_limit``. Any fault takes ``delay``.

In-process: ``with OpenAIDouble(api_key="sk-test") as double: double.base_url``. As a process:
``python -m tests.fakes.openai_double --port N --api-key sk-test`` prints ``READY <base_url>``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Self

import httpx
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from tests.fakes.openai_edits import read_edit
from tests.fakes.openai_models import MODELS, ApiError, ImageJob, validate
from tests.support.lifecycle import Started
from tests.support.threaded_server import ThreadedServer, bind_loopback

CONTENT_POLICY_MESSAGE = (
    "Your request was rejected as a result of our safety system. Your prompt may contain text "
    "that is not allowed by our safety system."
)
SERVER_ERROR_MESSAGE = (
    "The server had an error processing your request. Sorry about that! You can retry your "
    "request, or contact us through our help center at help.openai.com if you keep seeing this "
    "error."
)
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_RATE_LIMIT = 500
FAULT_KINDS = frozenset(
    {
        *("content_policy", "rate_limit", "server_error", "slow", "empty", "malformed"),
        *("oversize", "echo_key"),
    }
)
OVERSIZE = 100 * 1000 * 1000
_FILLER = b"A" * 65536


@dataclass(slots=True)
class Fault:
    kind: str
    model: str | None = None
    times: int = 1
    delay: float = 0.0
    retry_after: float | None = None
    retry_after_ms: float | None = None
    retry_after_raw: str | None = None
    status: int = 500
    size: int = OVERSIZE


@dataclass(slots=True)
class DoubleState:
    api_key: str | None
    url_ttl: float
    calls: Counter[str] = field(default_factory=Counter)
    requests: list[Any] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    files: dict[str, tuple[bytes, str, float]] = field(default_factory=dict)

    def take_fault(self, model: str) -> Fault | None:
        for fault in self.faults:
            if fault.model in (None, model):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def store_file(self, data: bytes, ext: str) -> str:
        now = time.monotonic()
        self.files = {k: v for k, v in self.files.items() if v[2] > now - 3600}
        name = f"img-{secrets.token_hex(12)}.{ext}"
        self.files[name] = (data, _MIME[ext], now + self.url_ttl)
        return name


@lru_cache(maxsize=256)
def _render(width: int, height: int, colour: tuple[int, int, int], fmt: str, alpha: bool) -> bytes:
    image = Image.new(
        "RGBA" if alpha else "RGB", (width, height), (*colour, 0) if alpha else colour
    )
    out = io.BytesIO()
    image.save(out, format=fmt.upper(), **({"optimize": True} if fmt == "png" else {}))
    return out.getvalue()


def render(job: ImageJob, index: int) -> bytes:
    """A solid-colour image of the job's size, coloured by prompt and index (tiny in bytes)."""
    digest = hashlib.sha256(f"{job.prompt}\0{index}".encode()).digest()
    alpha = job.background == "transparent" and job.output_format != "jpeg"
    return _render(
        job.width, job.height, (digest[0], digest[1], digest[2]), job.output_format, alpha
    )


def _headers(started: float, state: DoubleState) -> dict[str, str]:
    used = sum(state.calls.values())
    return {
        "x-request-id": f"req_{secrets.token_hex(16)}",
        "openai-processing-ms": str(int((time.perf_counter() - started) * 1000)),
        "openai-version": "2020-10-01",
        "x-ratelimit-limit-requests": str(_RATE_LIMIT),
        "x-ratelimit-remaining-requests": str(max(0, _RATE_LIMIT - used)),
        "x-ratelimit-reset-requests": "120ms",
    }


def _check_auth(request: Request, api_key: str | None) -> None:
    if api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        msg = (
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the basic auth "
            "username and password (i.e. -u YOUR_KEY:), or as the password field (with blank "
            "username) if you're accessing the API from your browser and are prompted for a "
            "username and password. You can obtain an API key from "
            "https://platform.openai.com/account/api-keys."
        )
        raise ApiError(401, msg)
    if token != api_key:
        shown = token if len(token) <= 8 else token[:3] + "*" * (len(token) - 7) + token[-4:]
        msg = (
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        raise ApiError(401, msg, code="invalid_api_key")


def _oversize(size: int) -> Response:
    """``{"created": 1, "data": [{"b64_json": "AAAA..."}]}`` of ``size`` bytes, 64 KiB at a time;
    the stream stops when the client goes away."""
    head, tail = b'{"created": 1, "data": [{"b64_json": "', b'"}]}'

    async def body() -> AsyncIterator[bytes]:
        yield head
        left = max(0, size - len(head) - len(tail))
        while left > 0:
            yield _FILLER[: min(left, len(_FILLER))]
            left -= len(_FILLER)
        yield tail

    return StreamingResponse(body(), media_type="application/json")


def _fault_reply(fault: Fault, model: str, request: Request) -> Response | None:
    if fault.kind == "oversize":
        return _oversize(fault.size)
    if fault.kind == "echo_key":
        sent = request.headers.get("authorization", "")
        token = sent.partition(" ")[2]
        msg = f"Incorrect API key provided: {token}. You sent 'Authorization: {sent}'."
        raise ApiError(401, msg, code="invalid_api_key")
    if fault.kind == "content_policy":
        raise ApiError(400, CONTENT_POLICY_MESSAGE, code="content_policy_violation")
    if fault.kind == "rate_limit":
        headers = {}
        if fault.retry_after is not None:
            headers["retry-after"] = f"{fault.retry_after:g}"
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = f"{fault.retry_after_ms:g}"
        if fault.retry_after_raw is not None:
            headers["retry-after"] = fault.retry_after_raw
        msg = (
            f"Rate limit reached for images per minute in organization org-double on model "
            f"{model}: Limit 5, Used 5, Requested 1. Please try again in 12s."
        )
        raise ApiError(429, msg, type="requests", code="rate_limit_exceeded", headers=headers)
    if fault.kind == "server_error":
        raise ApiError(fault.status, SERVER_ERROR_MESSAGE, type="server_error")
    if fault.kind == "empty":
        return JSONResponse({"created": int(time.time()), "data": []})
    if fault.kind == "malformed":
        return Response(b'{"created": 1, "data": [{"url": "ht', media_type="application/json")
    return None  # "slow": a normal reply after the delay


def _image_item(job: ImageJob, index: int, state: DoubleState, request: Request) -> dict[str, Any]:
    data = render(job, index)
    item: dict[str, Any]
    if job.response_format == "url":
        name = state.store_file(data, job.output_format)
        item = {"url": f"{str(request.base_url).rstrip('/')}/files/{name}"}
    else:
        item = {"b64_json": base64.b64encode(data).decode("ascii")}
    if job.spec.revises_prompt:
        item["revised_prompt"] = f"A detailed, vivid illustration of: {job.prompt}"
    return item


def _images_body(job: ImageJob, state: DoubleState, request: Request) -> dict[str, Any]:
    body: dict[str, Any] = {
        "created": int(time.time()),
        "data": [_image_item(job, i, state, request) for i in range(job.n)],
    }
    if job.spec.gpt_image:
        per_image = {"low": 272, "medium": 1056, "high": 4160}.get(job.quality, 1056)
        text_tokens = max(1, len(job.prompt.split()))
        output = per_image * job.n
        body |= {
            "background": "transparent" if job.background == "transparent" else "opaque",
            "output_format": job.output_format,
            "quality": job.quality if job.quality != "auto" else "medium",
            "size": job.size,
            "usage": {
                "input_tokens": text_tokens,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": text_tokens},
                "output_tokens": output,
                "total_tokens": text_tokens + output,
            },
        }
    return body


async def _generate(request: Request, state: DoubleState) -> Response:
    _check_auth(request, state.api_key)
    raw = await request.body()
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("not an object")
    except ValueError:
        state.calls["<invalid>"] += 1
        state.requests.append(raw.decode("utf-8", "replace"))
        msg = (
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)"
        )
        raise ApiError(400, msg) from None
    model = str(body.get("model") or "dall-e-2")
    state.calls[model] += 1
    state.requests.append(body)
    job = validate(body)
    fault = state.take_fault(model)
    if fault is not None:
        await asyncio.sleep(fault.delay)
        reply = _fault_reply(fault, model, request)
        if reply is not None:
            return reply
    return JSONResponse(_images_body(job, state, request))


async def _edit(request: Request, state: DoubleState) -> Response:
    _check_auth(request, state.api_key)
    job, record = await read_edit(request)
    state.calls[job.spec.id] += 1
    state.requests.append(record)
    fault = state.take_fault(job.spec.id)
    if fault is not None:
        await asyncio.sleep(fault.delay)
        reply = _fault_reply(fault, job.spec.id)
        if reply is not None:
            return reply
    return JSONResponse(_images_body(job, state, request))


def _model_entry(model_id: str) -> dict[str, Any]:
    spec = MODELS[model_id]
    return {"id": spec.id, "object": "model", "created": 1698785189, "owned_by": spec.owned_by}


async def _models(request: Request, state: DoubleState) -> Response:
    _check_auth(request, state.api_key)
    model_id = request.path_params.get("model_id")
    if model_id is None:
        return JSONResponse({"object": "list", "data": [_model_entry(m) for m in MODELS]})
    if model_id not in MODELS:
        msg = f"The model '{model_id}' does not exist"
        raise ApiError(404, msg, param="model", code="model_not_found")
    return JSONResponse(_model_entry(model_id))


def _api(state: DoubleState, handler: Any) -> Any:
    """Wrap an API handler: OpenAI error envelopes and the standard response headers."""

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            response: Response = await handler(request, state)
        except ApiError as exc:
            response = JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
        response.headers.update(_headers(started, state))
        return response

    return endpoint


def _control_routes(state: DoubleState) -> list[Route]:
    async def stats(request: Request) -> Response:
        return JSONResponse(
            {
                "calls": dict(state.calls),
                "total_calls": sum(state.calls.values()),
                "requests": state.requests,
                "pending_faults": len(state.faults),
            }
        )

    async def reset(request: Request) -> Response:
        state.calls.clear()
        state.requests.clear()
        state.faults.clear()
        state.files.clear()
        return JSONResponse({"ok": True})

    async def script(request: Request) -> Response:
        body = await request.json()
        faults = [Fault(**spec) for spec in body["faults"]]
        unknown = sorted({f.kind for f in faults} - FAULT_KINDS)
        if unknown:
            return JSONResponse({"error": f"unknown fault kinds {unknown}"}, status_code=400)
        state.faults.extend(faults)
        return JSONResponse({"pending_faults": len(state.faults)})

    return [
        Route("/_double/stats", stats, methods=["GET"]),
        Route("/_double/reset", reset, methods=["POST"]),
        Route("/_double/script", script, methods=["POST"]),
    ]


def _files_route(state: DoubleState) -> Route:
    async def files(request: Request) -> Response:
        entry = state.files.get(request.path_params["name"])
        if entry is None:
            body = (
                "<Error><Code>BlobNotFound</Code><Message>The specified blob does not "
                "exist.</Message></Error>"
            )
            return Response(body, status_code=404, media_type="application/xml")
        data, mime, expires = entry
        if time.monotonic() >= expires:
            body = (
                "<Error><Code>AuthenticationFailed</Code><AuthenticationErrorDetail>Signed "
                "expiry time has passed</AuthenticationErrorDetail></Error>"
            )
            return Response(body, status_code=403, media_type="application/xml")
        return Response(data, media_type=mime)

    return Route("/files/{name}", files, methods=["GET"])


def create_app(*, api_key: str | None = "sk-test", url_ttl: float = 3600.0) -> Starlette:
    """The double as an ASGI app; ``api_key=None`` disables auth (LocalAI-style)."""
    state = DoubleState(api_key=api_key, url_ttl=url_ttl)
    routes = [
        Route("/v1/images/generations", _api(state, _generate), methods=["POST"]),
        Route("/v1/images/edits", _api(state, _edit), methods=["POST"]),
        Route("/v1/models", _api(state, _models), methods=["GET"]),
        Route("/v1/models/{model_id:path}", _api(state, _models), methods=["GET"]),
        _files_route(state),
        *_control_routes(state),
    ]
    app = Starlette(routes=routes)
    app.state.double = state
    return app


def _bind(host: str, port: int) -> socket.socket:
    sock = bind_loopback(host, port)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _server(app: Starlette) -> uvicorn.Server:
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1
    )
    return uvicorn.Server(config)


class OpenAIDouble(Started):
    """Runs the double with uvicorn in a background thread on 127.0.0.1 and a free port."""

    def __init__(self, *, api_key: str | None = "sk-test", url_ttl: float = 3600.0) -> None:
        self.api_key = api_key
        self.app = create_app(api_key=api_key, url_ttl=url_ttl)
        self._runner = ThreadedServer(_server(self.app), name="the OpenAI double")
        self.port = 0

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, without ``/v1`` (the SDK wants ``base_url + "/v1"``)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        sock = bind_loopback()
        self.port = sock.getsockname()[1]
        self._runner.start(sock)
        return self

    def stop(self) -> None:
        self._runner.stop()

    # Control over HTTP, so the same calls work against the double run as a process.
    def script(self, *faults: Fault) -> None:
        body = {"faults": [asdict(f) for f in faults]}
        httpx.post(f"{self.base_url}/_double/script", json=body).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/_double/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def reset(self) -> None:
        httpx.post(f"{self.base_url}/_double/reset").raise_for_status()


async def _serve_forever(host: str, port: int, api_key: str | None, url_ttl: float) -> None:
    sock = _bind(host, port)
    server = _server(create_app(api_key=api_key, url_ttl=url_ttl))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        print(f"READY http://{host}:{sock.getsockname()[1]}", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the OpenAI Images API test double.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk-test", help="'' disables auth")
    parser.add_argument("--url-ttl", type=float, default=3600.0)
    args = parser.parse_args(argv)
    asyncio.run(_serve_forever(args.host, args.port, args.api_key or None, args.url_ttl))


if __name__ == "__main__":
    main()
