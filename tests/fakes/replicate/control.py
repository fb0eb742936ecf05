"""``/_double/*``: steer the double over HTTP (no auth), for tests that run it as a process.

- ``GET  /_double/stats``   counts, per-prediction status / ``Cancel-After``, rate-limit peaks
- ``POST /_double/reset``   initial config; forget predictions, files, faults and counts
- ``POST /_double/expire``  delete every output file now (URLs 404, ``data_removed: true``)
- ``POST /_double/script``  queue faults: one spec, a list, or ``{"faults": [...]}``
- ``GET|DELETE /_double/script``  list / drop pending faults
- ``GET|POST /_double/config``    read / patch ``DoubleConfig``
- ``GET  /_double/predictions/{id}``  a prediction as the API would render it now
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.fakes.replicate import problems
from tests.fakes.replicate.faults import FaultSpec
from tests.fakes.replicate.predictions import render
from tests.fakes.replicate.state import DoubleState


def queue_faults(state: DoubleState, payload: Any) -> int:
    """Validate and queue faults; raises ``pydantic.ValidationError`` (nothing queued then)."""
    if isinstance(payload, dict) and "faults" in payload:
        payload = payload["faults"]
    items = payload if isinstance(payload, list) else [payload]
    specs = [FaultSpec.model_validate(item) for item in items]
    for spec in specs:
        state.faults.add(spec)
    return len(specs)


def _invalid(exc: ValidationError) -> Response:
    errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    return problems.json_response({"detail": errors}, 400)


def control_routes(state: DoubleState) -> list[Route]:
    async def stats(request: Request) -> Response:
        return problems.json_response(state.stats())

    async def reset(request: Request) -> Response:
        state.reset()
        return problems.json_response({"ok": True})

    async def expire(request: Request) -> Response:
        return problems.json_response({"expired_files": state.expire_all()})

    async def script(request: Request) -> Response:
        if request.method == "GET":
            return problems.json_response({"pending": state.faults.pending()})
        if request.method == "DELETE":
            state.faults.clear()
            return problems.json_response({"pending": []})
        try:
            queued = queue_faults(state, await request.json())
        except ValidationError as exc:
            return _invalid(exc)
        except ValueError:
            return problems.bad_request("The request body is not valid JSON")
        return problems.json_response({"queued": queued, "pending": state.faults.pending()})

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                state.update_config(await request.json())
            except ValidationError as exc:
                return _invalid(exc)
            except (ValueError, TypeError):
                return problems.bad_request("Send a JSON object of DoubleConfig fields")
        return problems.json_response(state.config.model_dump())

    async def prediction(request: Request) -> Response:
        p = state.predictions.get(request.path_params["id"])
        if p is None:
            return problems.not_found()
        return problems.json_response(render(state.refresh(p)))

    return [
        Route("/_double/stats", stats, methods=["GET"]),
        Route("/_double/reset", reset, methods=["POST"]),
        Route("/_double/expire", expire, methods=["POST"]),
        Route("/_double/script", script, methods=["GET", "POST", "DELETE"]),
        Route("/_double/config", config, methods=["GET", "POST"]),
        Route("/_double/predictions/{id}", prediction, methods=["GET"]),
    ]
