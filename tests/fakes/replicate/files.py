"""``GET|HEAD /delivery/<prefix>/<id>/out-<i>.<ext>``: the output files (no auth, like
``replicate.delivery``); 404 once expired or deleted."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from tests.fakes.replicate.state import DoubleState


def file_routes(state: DoubleState) -> list[Route]:
    async def serve(request: Request) -> Response:
        params = request.path_params
        stored = state.file(f"{params['prefix']}/{params['file_id']}/{params['filename']}")
        if stored is None:
            return PlainTextResponse("Not Found", 404)
        headers = {"cache-control": "public, max-age=3600"}
        head = request.method == "HEAD"
        if stored.kind == "too_large":
            if not stored.chunked:
                headers["content-length"] = str(stored.size)
            if head:
                return Response(None, 200, headers, media_type=stored.content_type)
            return StreamingResponse(stored.stream(), 200, headers, stored.content_type)
        content = await run_in_threadpool(stored.content)
        headers["content-length"] = str(len(content))
        return Response(b"" if head else content, 200, headers, media_type=stored.content_type)

    return [
        Route("/delivery/{prefix}/{file_id}/{filename}", serve, methods=["GET", "HEAD"]),
    ]
