"""The ``/v1`` routes: auth, rate limits, validation, then predictions and models."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.fakes.replicate import listing, problems, uploads
from tests.fakes.replicate.config import parse_duration, parse_prefer
from tests.fakes.replicate.inputs import check_image_inputs
from tests.fakes.replicate.predictions import Prediction, View, render
from tests.fakes.replicate.state import DoubleState
from tests.fakes.replicate.validation import validate_envelope, validate_input
from tests.fakes.replicate_models import MODELS, ModelSpec, find_version

Handler = Callable[[Request], Awaitable[Response]]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def version_label(model: ModelSpec, version_id: str) -> str:
    """What ``version`` says in a prediction: ``hidden`` for official models."""
    return "hidden" if model.official else version_id


def resolve_version(ref: str) -> tuple[ModelSpec, str] | None:
    """``<64hex>`` | ``owner/name:<64hex>`` | ``owner/name`` (official only) -> model, label."""
    if _HEX64.match(ref):
        found = find_version(ref)
        return None if found is None else (found[0], version_label(found[0], ref))
    name, _, version_id = ref.partition(":")
    model = MODELS.get(name)
    if model is None:
        return None
    if version_id:
        known = model.find_version(version_id) is not None
        return (model, version_label(model, version_id)) if known else None
    return (model, "hidden") if model.official else None


class ReplicateApi:
    def __init__(self, state: DoubleState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        gate = self._gate
        return [
            Route("/v1/predictions", gate("create", self.create_by_version), methods=["POST"]),
            Route(
                "/v1/models/{owner}/{name}/predictions",
                gate("create", self.create_by_model),
                methods=["POST"],
            ),
            Route(
                "/v1/deployments/{owner}/{name}/predictions",
                gate("create", self.create_by_deployment),
                methods=["POST"],
            ),
            Route("/v1/predictions", gate("list", self.list_predictions), methods=["GET"]),
            Route("/v1/predictions/{id}", gate("get", self.get), methods=["GET"]),
            Route("/v1/predictions/{id}/cancel", gate("cancel", self.cancel), methods=["POST"]),
            Route("/v1/files", gate("files", self.create_file), methods=["POST"]),
            Route("/v1/files/{file_id}", gate("files", self.get_file), methods=["GET"]),
            Route(
                "/v1/files/{file_id}/download",
                gate("files", self.download_file),
                methods=["GET"],
            ),
            Route("/v1/models/{owner}/{name}", gate("model", self.get_model), methods=["GET"]),
            Route(
                "/v1/models/{owner}/{name}/versions",
                gate("version", self.list_versions),
                methods=["GET"],
            ),
            Route(
                "/v1/models/{owner}/{name}/versions/{version_id}",
                gate("version", self.get_version),
                methods=["GET"],
            ),
        ]

    def _gate(self, route: str, handler: Handler) -> Handler:
        """Auth, then the route's token bucket, then the handler; adds ``ratelimit-*`` headers."""

        async def gated(request: Request) -> Response:
            denied = self._check_auth(request.headers.get("authorization"))
            if denied is not None:
                return denied
            take = self.state.take_rate(route)
            if not take.allowed:
                return problems.throttled(take.reset, low_credit=self._low_credit(route))
            response = await handler(request)
            response.headers["ratelimit-remaining"] = str(take.remaining)
            response.headers["ratelimit-reset"] = str(take.reset)
            return response

        return gated

    def _low_credit(self, route: str) -> bool:
        return route == "create" and self.state.config.low_credit

    def _check_auth(self, header: str | None) -> Response | None:
        if not header:
            return problems.unauthenticated(token_sent=False)
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "token") or token.strip() != self.state.config.token:
            return problems.unauthenticated(token_sent=True)
        return None

    # -- creates ------------------------------------------------------------------------------

    async def create_by_version(self, request: Request) -> Response:
        body, error = await _json_body(request)
        if error is not None:
            return error
        invalid = validate_envelope(body, needs_version=True)
        if invalid:
            return problems.validation_failed(invalid)
        resolved = resolve_version(body["version"])
        if resolved is None:
            return problems.invalid_version()
        return await self._create(request, resolved[0], resolved[1], body["input"])

    async def create_by_model(self, request: Request) -> Response:
        model = MODELS.get(f"{request.path_params['owner']}/{request.path_params['name']}")
        if model is None or not model.official:
            return problems.not_found()
        body, error = await _json_body(request)
        if error is not None:
            return error
        invalid = validate_envelope(body, needs_version=False)
        if invalid:
            return problems.validation_failed(invalid)
        return await self._create(request, model, "hidden", body["input"])

    async def create_by_deployment(self, request: Request) -> Response:
        deployment = f"{request.path_params['owner']}/{request.path_params['name']}"
        target = self.state.config.deployments.get(deployment)
        resolved = None if target is None else resolve_version(target)
        if resolved is None:
            return problems.not_found()
        body, error = await _json_body(request)
        if error is not None:
            return error
        invalid = validate_envelope(body, needs_version=False)
        if invalid:
            return problems.validation_failed(invalid)
        model, label = resolved
        return await self._create(request, model, label, body["input"], deployment)

    async def _create(
        self,
        request: Request,
        model: ModelSpec,
        version: str,
        given: dict[str, Any],
        deployment: str | None = None,
    ) -> Response:
        cfg = self.state.config
        invalid = validate_input(model, given)
        if invalid:
            return problems.validation_failed(invalid)
        invalid, image_inputs = check_image_inputs(model, given, self.state.uploads)
        if invalid:
            return problems.validation_failed(invalid)
        cancel_after = request.headers.get("cancel-after")
        lifetime = None
        if cancel_after is not None:
            seconds = parse_duration(cancel_after)
            if seconds is None or seconds < cfg.min_cancel_after:
                return problems.bad_request(
                    f"Invalid Cancel-After header {cancel_after!r}: use a duration like 30s, 5m "
                    f"or 1h30m, at least {cfg.min_cancel_after:g}s"
                )
            lifetime = seconds * cfg.cancel_after_scale
        prefer = request.headers.get("prefer")
        api_base = cfg.public_base_url or str(request.base_url).rstrip("/")
        p = self.state.create(
            model,
            version,
            given,
            api_base=api_base,
            file_base=cfg.file_base_url or api_base,
            lifetime=lifetime,
            cancel_after=cancel_after,
            prefer=prefer,
            deployment=deployment,
            image_inputs=image_inputs,
        )
        wait = parse_prefer(prefer)
        if wait is None or prefer is None:
            return problems.json_response(render(p), 201)
        done = await self._hold(p, min(wait, cfg.max_wait))
        view: View
        if done:
            view = "sync_done" if cfg.sync_done_status == "processing" else "actual"
        else:
            view = "created" if cfg.sync_timeout_status == "starting" else "actual"
        headers = {"Preference-Applied": prefer.strip()}
        return problems.json_response(render(p, view), 201, headers)

    async def _hold(self, p: Prediction, seconds: float) -> bool:
        """Sync mode: wait until ``p`` is terminal (True) or ``seconds`` pass (False)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while not self.state.refresh(p).is_terminal:
            left = end - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(0.01, left))
        return True

    # -- files --------------------------------------------------------------------------------

    async def create_file(self, request: Request) -> Response:
        cfg = self.state.config
        api_base = cfg.public_base_url or str(request.base_url).rstrip("/")
        return await uploads.create_file(request, self.state.uploads, api_base)

    async def get_file(self, request: Request) -> Response:
        return await uploads.get_file(request, self.state.uploads)

    async def download_file(self, request: Request) -> Response:
        return await uploads.download_file(request, self.state.uploads)

    # -- reads and cancel ---------------------------------------------------------------------

    async def get(self, request: Request) -> Response:
        p = self.state.get(request.path_params["id"])
        return problems.not_found() if p is None else problems.json_response(render(p))

    async def list_predictions(self, request: Request) -> Response:
        try:
            query = listing.parse_query(dict(request.query_params))
        except listing.BadQuery as exc:
            return problems.bad_request(str(exc))
        url = str(request.url.replace(query="")).rstrip("?")
        if self.state.config.public_base_url:
            url = f"{self.state.config.public_base_url}/v1/predictions"
        return problems.json_response(self.state.list_page(query, url=url))

    async def cancel(self, request: Request) -> Response:
        p = self.state.cancel(request.path_params["id"])
        return problems.not_found() if p is None else problems.json_response(render(p))

    async def get_model(self, request: Request) -> Response:
        model = MODELS.get(f"{request.path_params['owner']}/{request.path_params['name']}")
        return problems.not_found() if model is None else problems.json_response(model.model_json())

    async def list_versions(self, request: Request) -> Response:
        model = MODELS.get(f"{request.path_params['owner']}/{request.path_params['name']}")
        if model is None:
            return problems.not_found()
        if model.official:
            return problems.official_versions_hidden()
        results = [model.version_json(v) for v in model.versions]
        return problems.json_response({"next": None, "previous": None, "results": results})

    async def get_version(self, request: Request) -> Response:
        model = MODELS.get(f"{request.path_params['owner']}/{request.path_params['name']}")
        version = None if model is None else model.find_version(request.path_params["version_id"])
        if model is None or version is None:
            return problems.not_found()
        return problems.json_response(model.version_json(version))


async def _json_body(request: Request) -> tuple[Any, Response | None]:
    raw = await request.body()
    if not raw.strip():
        return None, None  # the envelope check reports "Expected: object, given: null"
    try:
        return json.loads(raw), None
    except ValueError:
        return None, problems.bad_request("The request body is not valid JSON")
