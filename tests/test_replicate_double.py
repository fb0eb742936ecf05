"""Fidelity tests of the Replicate double: the real ``replicate`` client against it, its bodies
against the recorded cassettes and the OpenAPI spec, lifecycle, sync mode, deadlines, rate
limits, file expiry, output sizes, validation shapes, and the scripted faults."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import jsonschema_rs
import pytest
import replicate
import yaml
from pydantic.v1 import ValidationError as PydanticV1ValidationError
from replicate.exceptions import ModelError, ReplicateError
from tests.fakes.images import image_info
from tests.fakes.replicate_double import DoubleControl, DoubleProcess, ReplicateDouble
from tests.fakes.replicate_models import (
    FLUX_PRO_REF,
    FLUX_SCHNELL_REF,
    GRANITE_REF,
    IMAGEN_REF,
    SDXL_INPUT,
    SDXL_LIGHTNING_REF,
    SDXL_LIGHTNING_VERSION,
    SDXL_OLD_INPUT,
    SDXL_OLD_VERSION,
    SDXL_REF,
    SDXL_VERSION,
    TEXT_ITERATOR_OUTPUT,
    URI_LIST_OUTPUT,
)
from tests.support.replicate_fixtures import OPENAPI, RECORDINGS

CASSETTES = RECORDINGS
TOKEN = "r8_test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TQDM = re.compile(r"^\s*(\d+)%\s*\|.+?\|\s*(\d+)/(\d+)")  # replicate's Prediction.progress regex


# -- fixtures and helpers -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def clocked_server(clock: FakeClock) -> Iterator[ReplicateDouble]:
    with ReplicateDouble(clock=clock) as double:
        yield double


@pytest.fixture
def clocked(clocked_server: ReplicateDouble) -> ReplicateDouble:
    """A double whose predictions, deadlines, TTLs and buckets move only with ``clock``."""
    clocked_server.reset()
    return clocked_server


def http(double: ReplicateDouble, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=double.base_url, headers=AUTH, timeout=10, **kwargs)


@pytest.fixture
def api(replicate_double: ReplicateDouble) -> Iterator[httpx.Client]:
    with http(replicate_double) as client:
        yield client


@pytest.fixture
def fast(replicate_double: ReplicateDouble) -> ReplicateDouble:
    """The shared double with 30 ms predictions, for tests about outputs rather than timing."""
    replicate_double.configure(queue_time=0.01, duration=0.02)
    return replicate_double


@pytest.fixture
def capi(clocked: ReplicateDouble) -> Iterator[httpx.Client]:
    with http(clocked) as client:
        yield client


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create(
    client: httpx.Client, ref: str, inputs: dict[str, Any], **headers: str
) -> httpx.Response:
    """POST the way the real client would: official refs by model, others by version id."""
    if ":" in ref:
        body = {"version": ref.split(":")[1], "input": inputs}
        return client.post("/v1/predictions", json=body, headers=headers)
    return client.post(f"/v1/models/{ref}/predictions", json={"input": inputs}, headers=headers)


def run_sync(client: httpx.Client, ref: str, inputs: dict[str, Any]) -> dict[str, Any]:
    response = create(client, ref, inputs, Prefer="wait=10")
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def cassette(name: str) -> list[tuple[str, str, int, dict[str, Any], Any]]:
    """``(method, uri, status, headers, json body)`` per recorded interaction."""
    data = yaml.safe_load((CASSETTES / name).read_text())
    rows = []
    for item in data["interactions"]:
        request, response = item["request"], item["response"]
        raw = response.get("content")
        if raw is None:
            raw = response["body"]["string"]
            if isinstance(raw, bytes):
                gzipped = response["headers"].get("Content-Encoding") == ["gzip"]
                raw = (gzip.decompress(raw) if gzipped else raw).decode()
        status = response.get("status_code") or response["status"]["code"]
        rows.append(
            (request["method"], request["uri"], status, response["headers"], json.loads(raw))
        )
    return rows


def recorded_predictions() -> list[dict[str, Any]]:
    bodies = []
    for path in sorted(CASSETTES.glob("*.yaml")):
        for _method, uri, _status, _headers, body in cassette(path.name):
            if "/predictions" in uri and isinstance(body, dict) and "id" in body:
                bodies.append(body)
    return bodies


def _inline_refs(node: Any, root: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _inline_refs(target, root)
        out = {k: _inline_refs(v, root) for k, v in node.items()}
        if out.pop("nullable", False) and "type" in out:  # OpenAPI ``nullable`` -> JSON Schema
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [_inline_refs(v, root) for v in node]
    return node


def spec_schema(path: str, method: str, status: str) -> dict[str, Any]:
    spec = json.loads(OPENAPI.read_text())
    response = spec["paths"][path][method]["responses"][status]
    schema: dict[str, Any] = _inline_refs(response["content"]["application/json"]["schema"], spec)
    return schema


def prediction_validator(*, historical: bool) -> Any:
    """The spec's prediction schema; ``historical`` admits what 2023-24 recordings really show:
    no ``output``/``data_removed``/``urls.web`` yet (nor ``model``, in one 2023 body), and
    ``logs: null`` on the cancel of a queued prediction."""
    schema = spec_schema("/predictions/{prediction_id}", "get", "200")
    if historical:
        added_later = ("output", "data_removed", "model")
        schema["required"] = [k for k in schema["required"] if k not in added_later]
        schema["properties"]["urls"]["required"] = ["get", "cancel"]
        schema["properties"]["logs"]["type"] = ["string", "null"]
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def assert_valid(validator: Any, body: Any) -> None:
    errors = [str(e) for e in validator.iter_errors(body)]
    assert not errors, (errors, body)


def json_kind(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(
        type(value), "object"
    )


# -- the real client against the double -----------------------------------------------------------


def test_run_official_model_returns_urls_to_real_images(
    replicate_double: ReplicateDouble, replicate_client: Any
) -> None:
    out = replicate_client.run(
        FLUX_SCHNELL_REF, input={"prompt": "a fox", "num_outputs": 2, "aspect_ratio": "16:9"}
    )
    assert isinstance(out, list)
    assert len(out) == 2
    for i, url in enumerate(out):
        assert re.fullmatch(
            re.escape(replicate_double.base_url)
            + rf"/delivery/[a-z]{{4}}/[A-Za-z0-9]{{44}}/out-{i}.webp",
            url,
        )
        assert image_info(httpx.get(url).content) == ("webp", 1344, 768)


def test_run_community_version_posts_then_reads_the_version(
    replicate_double: ReplicateDouble, replicate_client: Any
) -> None:
    out = replicate_client.run(
        f"{SDXL_REF}:{SDXL_OLD_VERSION}", input={"prompt": "corgi", "width": 512, "height": 512}
    )
    assert image_info(httpx.get(out[0]).content) == ("png", 512, 512)
    stats = replicate_double.stats()
    assert stats["requests"]["create"] == 1
    assert stats["requests"]["version"] == 1
    assert stats["creates"]["by_model"] == {SDXL_REF: 1}


def test_create_then_wait_shows_progress_and_metrics(replicate_client: Any) -> None:
    prediction = replicate_client.predictions.create(model=FLUX_SCHNELL_REF, input={"prompt": "x"})
    assert prediction.status == "starting"
    assert prediction.version == "hidden"
    assert prediction.output is None
    prediction.wait()
    assert prediction.status == "succeeded"
    assert prediction.completed_at
    assert (prediction.progress.current, prediction.progress.total) == (4, 4)
    assert set(prediction.metrics) >= {"predict_time", "total_time"}
    assert len(prediction.output) == 1


def test_cancel_through_the_client(
    replicate_double: ReplicateDouble, replicate_client: Any
) -> None:
    replicate_double.configure(duration=30)
    prediction = replicate_client.predictions.create(version=SDXL_VERSION, input={"prompt": "x"})
    canceled = replicate_client.predictions.cancel(prediction.id)
    assert canceled.status == "canceled"
    assert canceled.output is None
    assert canceled.completed_at
    assert set(canceled.metrics) == {"predict_time", "total_time"}
    assert replicate_client.predictions.get(prediction.id).status == "canceled"
    assert replicate_double.stats()["cancels"] == 1


def test_models_get_exposes_the_version_schemas(replicate_client: Any) -> None:
    sdxl = replicate_client.models.get(SDXL_REF)
    assert sdxl.latest_version.id == SDXL_VERSION
    assert sdxl.latest_version.openapi_schema["components"]["schemas"]["Input"] == SDXL_INPUT
    flux = replicate_client.models.get(FLUX_SCHNELL_REF)
    assert flux.latest_version.openapi_schema["components"]["schemas"]["Output"] == URI_LIST_OUTPUT
    granite = replicate_client.models.get(GRANITE_REF).latest_version.openapi_schema
    assert granite["components"]["schemas"]["Output"] == TEXT_ITERATOR_OUTPUT


def test_text_model_returns_chunks(replicate_client: Any) -> None:
    assert "".join(replicate_client.run(GRANITE_REF, input={"prompt": "haiku"})).strip()


@pytest.mark.parametrize(
    ("token_sent", "expected"),
    [
        (
            False,
            "ReplicateError Details:\ntitle: Unauthenticated\nstatus: 401\n"
            "detail: You did not pass an authentication token",
        ),
        (
            True,
            "ReplicateError Details:\ntitle: Unauthenticated\nstatus: 401\n"
            "detail: You did not pass a valid authentication token",
        ),
    ],
)
def test_unauthenticated_error_strings(
    replicate_double: ReplicateDouble,
    monkeypatch: pytest.MonkeyPatch,
    token_sent: bool,
    expected: str,
) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    token = "r8_wrong" if token_sent else None
    client = replicate.Client(api_token=token, base_url=replicate_double.base_url)
    with pytest.raises(ReplicateError) as info:
        client.run(FLUX_SCHNELL_REF, input={"prompt": "x"})
    assert str(info.value) == expected


CREDIT = (
    "You have insufficient credit to run this model. Go to https://replicate.com/account/billing"
    "#billing to purchase credit. Once you purchase credit, please wait a few minutes before "
    "trying again."
)
ERROR_CASES: dict[str, tuple[dict[str, Any] | None, Callable[[Any], Any], str]] = {
    "402": (
        {"fault": "insufficient_credit"},
        lambda c: c.run(FLUX_SCHNELL_REF, input={"prompt": "x"}),
        f"ReplicateError Details:\ntitle: Insufficient credit\nstatus: 402\ndetail: {CREDIT}",
    ),
    "404-unknown-model": (
        None,
        lambda c: c.run("nobody/nothing", input={"prompt": "x"}),
        "ReplicateError Details:\nstatus: 404\ndetail: The requested resource could not be found.",
    ),
    "404-community-model-on-models-route": (
        None,
        lambda c: c.predictions.create(model=SDXL_REF, input={"prompt": "x"}),
        "ReplicateError Details:\nstatus: 404\ndetail: The requested resource could not be found.",
    ),
    "422-invalid-version": (
        None,
        lambda c: c.run(f"{SDXL_REF}:{'0' * 64}", input={}),
        "ReplicateError Details:\ntitle: Invalid version or not permitted\nstatus: 422\n"
        "detail: The specified version does not exist (or perhaps you don't have permission to "
        "use it?)",
    ),
    "422-input": (
        None,
        lambda c: c.run(FLUX_SCHNELL_REF, input={"prompt": "x", "num_outputs": 5}),
        "ReplicateError Details:\ntitle: Input validation failed\nstatus: 422\n"
        "detail: - input.num_outputs: Must be less than or equal to 4\n",
    ),
    "429": (
        {"fault": "rate_limit", "retry_after": 30},
        lambda c: c.run(FLUX_SCHNELL_REF, input={"prompt": "x"}),
        "ReplicateError Details:\nstatus: 429\n"
        "detail: Request was throttled. Your rate limit resets in ~30s.",
    ),
    "500-empty": (
        {"fault": "empty_500"},
        lambda c: c.run(FLUX_SCHNELL_REF, input={"prompt": "x"}),
        "ReplicateError Details:\nstatus: 500",
    ),
    "502-html": (
        {"fault": "html_502"},
        lambda c: c.run(FLUX_SCHNELL_REF, input={"prompt": "x"}),
        "ReplicateError Details:\nstatus: 502",
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_replicate_error_strings(
    replicate_double: ReplicateDouble, replicate_client: Any, case: str
) -> None:
    fault, call, expected = ERROR_CASES[case]
    if fault is not None:
        replicate_double.script(**fault)
    with pytest.raises(ReplicateError) as info:
        call(replicate_client)
    assert str(info.value) == expected
    assert replicate_double.stats()["requests"]["create"] == 1  # POST is never retried


def test_client_retries_gets_on_503_and_sees_failures_as_model_error(
    replicate_double: ReplicateDouble, replicate_client: Any
) -> None:
    replicate_double.script("fail_prediction", error="CUDA error: device-side assert triggered")
    replicate_double.script(
        route="get", status=503, body={"detail": "busy", "status": 503}, times=2
    )
    with pytest.raises(ModelError) as info:
        replicate_client.run(FLUX_SCHNELL_REF, input={"prompt": "x"}, wait=False)
    assert str(info.value) == "CUDA error: device-side assert triggered"
    assert replicate_double.stats()["faults_fired"] == [
        "fail_prediction",
        "status_503",
        "status_503",
    ]


async def test_async_run(replicate_double: ReplicateDouble) -> None:
    client = replicate_double.client()  # one client per event loop (replicate-python #217)
    ref = f"{SDXL_LIGHTNING_REF}:{SDXL_LIGHTNING_VERSION}"
    out = await client.async_run(ref, input={"width": 256, "height": 256})
    assert len(out) == 1
    assert out[0].endswith(".png")


def test_data_uri_mode_gives_file_outputs(
    replicate_double: ReplicateDouble, replicate_client: Any
) -> None:
    replicate_double.configure(output_mode="data_uri")
    out = replicate_client.run(FLUX_SCHNELL_REF, input={"prompt": "x", "megapixels": "0.25"})
    assert out[0].url.startswith("data:image/webp;base64,")
    assert image_info(out[0].read()) == ("webp", 512, 512)


def test_aborted_status_breaks_replicate_1_0_7(clocked: ReplicateDouble, clock: FakeClock) -> None:
    clocked.configure(queue_time=60)
    client = replicate.Client(
        api_token=TOKEN, base_url=clocked.base_url, headers={"Cancel-After": "5s"}
    )
    prediction = client.predictions.create(model=FLUX_SCHNELL_REF, input={"prompt": "x"})
    clock.advance(6)
    with pytest.raises(PydanticV1ValidationError, match="aborted"):
        client.predictions.get(prediction.id)


# -- shapes: recordings and the OpenAPI spec ------------------------------------------------------


def test_recorded_predictions_validate_against_the_spec() -> None:
    validator = prediction_validator(historical=True)
    bodies = recorded_predictions()
    assert len(bodies) >= 20
    for body in bodies:
        assert_valid(validator, body)


def test_double_predictions_match_the_spec_and_the_recorded_shapes(
    clocked: ReplicateDouble, capi: httpx.Client, clock: FakeClock
) -> None:
    clocked.configure(queue_time=1, duration=4)
    sdxl = f"{SDXL_REF}:{SDXL_OLD_VERSION}"
    corgi = {"prompt": "a studio photo of a rainbow colored corgi", "width": 512, "height": 512}
    ours: dict[str, list[dict[str, Any]]] = {}
    first = create(capi, sdxl, corgi).json()
    ours["starting"] = [first]
    clock.advance(2)
    ours["processing"] = [capi.get(f"/v1/predictions/{first['id']}").json()]
    clock.advance(3)
    ours["succeeded"] = [capi.get(f"/v1/predictions/{first['id']}").json()]
    queued = create(capi, sdxl, corgi).json()
    ours["canceled"] = [capi.post(f"/v1/predictions/{queued['id']}/cancel").json()]
    clocked.script("fail_prediction")
    failed = create(capi, sdxl, corgi).json()
    clock.advance(5)
    ours["failed"] = [capi.get(f"/v1/predictions/{failed['id']}").json()]

    strict, historical = (
        prediction_validator(historical=False),
        prediction_validator(historical=True),
    )
    for status, bodies in ours.items():
        for body in bodies:
            assert body["status"] == status
            queued_cancel = status == "canceled" and body["logs"] is None  # as recorded
            assert_valid(historical if queued_cancel else strict, body)
    assert ours["starting"][0]["input"] == corgi  # echoed as sent, keys sorted like the API
    assert list(ours["starting"][0]["input"]) == sorted(corgi)
    for recorded in recorded_predictions():
        mine = ours[recorded["status"]][0]
        missing = set(recorded) - set(mine) - {"webhook_completed"}
        assert not missing, (recorded["status"], missing)
        for key, value in recorded.items():
            if value is not None and mine.get(key) is not None and key != "webhook_completed":
                assert json_kind(mine[key]) == json_kind(value), key


def test_models_and_versions_match_the_recordings(api: httpx.Client) -> None:
    model_schema = jsonschema_rs.validator_for(
        spec_schema("/models/{model_owner}/{model_name}", "get", "200")
    )
    version_path = "/models/{model_owner}/{model_name}/versions/{version_id}"
    version_schema = jsonschema_rs.validator_for(spec_schema(version_path, "get", "200"))
    recorded_inputs = {}
    for name in ("models-get.yaml", "test_predictions_create_blocking[True-True].yaml"):
        for method, uri, _status, _headers, body in cassette(name):
            if method != "GET" or "/models/stability-ai/sdxl" not in uri:
                continue
            path = uri.removeprefix("https://api.replicate.com")
            mine = api.get(path).json()
            if "/versions/" in uri:
                assert set(mine) == set(body)
                assert set(mine["openapi_schema"]) == set(body["openapi_schema"])
                assert_valid(version_schema, mine)
                recorded_inputs[body["id"]] = body["openapi_schema"]["components"]["schemas"]
            else:
                assert set(mine) >= set(body)
                assert set(mine["latest_version"]) == set(body["latest_version"])
                assert_valid(model_schema, mine)
    assert recorded_inputs[SDXL_VERSION]["Input"] == SDXL_INPUT
    assert recorded_inputs[SDXL_OLD_VERSION]["Input"] == SDXL_OLD_INPUT
    mine_schemas = api.get(f"/v1/models/{SDXL_REF}/versions/{SDXL_VERSION}").json()
    for name in ("Input", "Output", "refine", "scheduler", "Status", "WebhookEvent"):
        assert (
            mine_schemas["openapi_schema"]["components"]["schemas"][name]
            == (recorded_inputs[SDXL_VERSION][name])
        )


def test_headers_and_problem_bodies_match_the_recordings(
    replicate_double: ReplicateDouble, api: httpx.Client
) -> None:
    base = replicate_double.base_url
    created = create(api, FLUX_SCHNELL_REF, {"prompt": "x"})
    assert created.status_code == 201
    assert created.headers["content-type"] == "application/json; charset=utf-8"
    assert (created.headers["ratelimit-remaining"], created.headers["ratelimit-reset"]) == (
        "599",
        "1",
    )
    body = created.json()
    assert re.fullmatch(r"[0-9a-z]{26}", body["id"])
    assert body["urls"] == {
        "cancel": f"{base}/v1/predictions/{body['id']}/cancel",
        "get": f"{base}/v1/predictions/{body['id']}",
        "web": f"{base}/p/{body['id']}",
    }
    assert api.get(f"/v1/predictions/{body['id']}").headers["ratelimit-remaining"] == "59999"
    assert api.get(f"/v1/models/{SDXL_REF}").headers["ratelimit-remaining"] == "2999"
    denied = httpx.post(f"{base}/v1/predictions", json={"version": SDXL_VERSION, "input": {}})
    assert denied.status_code == 401
    assert denied.headers["content-type"] == "application/problem+json"
    assert denied.content == (
        b'{"title":"Unauthenticated","detail":"You did not pass an authentication token",'
        b'"status":401}\n'
    )
    unknown = api.get("/v1/predictions/doesnotexist")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "The requested resource could not be found.", "status": 404}


# -- lifecycle, sync mode, deadlines --------------------------------------------------------------


def test_lifecycle_starting_processing_succeeded(
    clocked: ReplicateDouble, capi: httpx.Client, clock: FakeClock
) -> None:
    clocked.configure(queue_time=0.5, duration=4)
    t0 = clock.now
    created = create(capi, FLUX_SCHNELL_REF, {"prompt": "x", "seed": 7}).json()
    assert created["status"] == "starting"
    assert created["created_at"] == iso(t0)
    assert created["logs"] == ""
    assert created["output"] is None
    assert "started_at" not in created
    clock.advance(2.5)  # 2 of 4 one-second steps done
    running = capi.get(f"/v1/predictions/{created['id']}").json()
    assert running["status"] == "processing"
    assert running["started_at"] == iso(t0 + 0.5)
    lines = running["logs"].splitlines()
    assert lines[0] == "Using seed: 7"
    assert lines[-1] == " 50%|█████     | 2/4 [00:02<00:02,  1.00it/s]"
    assert TQDM.match(lines[-1])
    clock.advance(2)
    done = capi.get(f"/v1/predictions/{created['id']}").json()
    assert done["status"] == "succeeded"
    assert done["completed_at"] == iso(t0 + 4.5)
    assert done["metrics"] == {"predict_time": 4.0, "image_count": 1, "total_time": 4.5}
    assert done["logs"].splitlines()[-1] == "100%|██████████| 4/4 [00:04<00:00,  1.00it/s]"


def test_sync_mode_returns_starting_when_the_wait_runs_out(
    replicate_double: ReplicateDouble, api: httpx.Client
) -> None:
    replicate_double.configure(duration=30, max_wait=0.3)
    started = time.monotonic()
    response = create(api, FLUX_SCHNELL_REF, {"prompt": "x"}, Prefer="wait")
    assert 0.3 <= time.monotonic() - started < 5
    assert response.status_code == 201
    assert response.headers["preference-applied"] == "wait"
    body = response.json()
    assert body["status"] == "starting"
    assert body["output"] is None
    assert "started_at" not in body


def test_sync_mode_returns_outputs_when_done(
    replicate_double: ReplicateDouble, api: httpx.Client
) -> None:
    response = create(api, FLUX_SCHNELL_REF, {"prompt": "x"}, Prefer="wait=5")
    assert response.headers["preference-applied"] == "wait=5"
    body = response.json()  # as recorded: files ready, status still processing, no metrics
    assert body["status"] == "processing"
    assert len(body["output"]) == 1
    assert "metrics" not in body
    assert "completed_at" not in body
    replicate_double.configure(sync_done_status="succeeded")
    body = create(api, FLUX_SCHNELL_REF, {"prompt": "x"}, Prefer="wait=5").json()
    assert body["status"] == "succeeded"
    assert "metrics" in body


def test_cancel_after_aborts_queued_and_cancels_running(
    clocked: ReplicateDouble, capi: httpx.Client, clock: FakeClock
) -> None:
    clocked.configure(queue_time=10, duration=60)
    t0 = clock.now
    queued = create(capi, FLUX_SCHNELL_REF, {"prompt": "x"}, **{"Cancel-After": "5s"}).json()
    assert queued["deadline"] == iso(t0 + 5)
    clock.advance(5)
    aborted = capi.get(f"/v1/predictions/{queued['id']}").json()
    assert aborted["status"] == "aborted"
    assert "started_at" not in aborted
    assert aborted["output"] is None

    clocked.configure(queue_time=0, duration=120)
    t1 = clock.now
    running = create(capi, FLUX_SCHNELL_REF, {"prompt": "x"}, **{"Cancel-After": "1m"}).json()
    clock.advance(30)
    assert capi.get(f"/v1/predictions/{running['id']}").json()["status"] == "processing"
    clock.advance(31)
    canceled = capi.get(f"/v1/predictions/{running['id']}").json()
    assert canceled["status"] == "canceled"
    assert canceled["completed_at"] == iso(t1 + 60)

    long = create(capi, FLUX_SCHNELL_REF, {"prompt": "x"}, **{"Cancel-After": "1h30m"}).json()
    assert long["deadline"] == iso(clock.now + 5400)
    assert (
        create(capi, FLUX_SCHNELL_REF, {"prompt": "x"}, **{"Cancel-After": "2s"}).status_code == 400
    )
    seen = {p["id"]: p["cancel_after"] for p in clocked.stats()["predictions"]}
    assert seen[queued["id"]] == "5s"
    assert seen[running["id"]] == "1m"


# -- rate limits, files, sizes, validation --------------------------------------------------------


def test_rate_limit_throttles_creates_in_replicates_shape(
    clocked: ReplicateDouble, capi: httpx.Client, clock: FakeClock
) -> None:
    clocked.configure(create_rate=60, create_burst=2)
    first, second, third = (create(capi, FLUX_SCHNELL_REF, {"prompt": "x"}) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (201, 201, 429)
    assert (first.headers["ratelimit-remaining"], second.headers["ratelimit-remaining"]) == (
        "1",
        "0",
    )
    assert third.headers["retry-after"] == "1"
    assert third.headers["content-type"] == "application/problem+json"
    assert third.json() == {
        "detail": "Request was throttled. Your rate limit resets in ~1s.",
        "status": 429,
        "retry_after": 1,
    }
    clock.advance(1)
    assert create(capi, FLUX_SCHNELL_REF, {"prompt": "x"}).status_code == 201
    stats = clocked.stats()
    assert stats["creates"]["total"] == 3
    assert stats["creates_rate_limited"] == 1
    assert stats["max_creates_per_60s"] == 3
    clocked.configure(low_credit=True)
    create(capi, FLUX_SCHNELL_REF, {"prompt": "x"})
    throttled = create(capi, FLUX_SCHNELL_REF, {"prompt": "x"}).json()
    assert "reduced to 6 requests per minute with a burst of 1" in throttled["detail"]


def test_files_expire_after_the_ttl_and_on_demand(
    clocked: ReplicateDouble, capi: httpx.Client, clock: FakeClock
) -> None:
    clocked.configure(file_ttl=100)
    created = create(capi, IMAGEN_REF, {"prompt": "x"}).json()
    clock.advance(1)
    url = capi.get(f"/v1/predictions/{created['id']}").json()["output"]
    head = httpx.head(url)
    assert head.status_code == 200
    assert head.headers["content-type"] == "image/jpeg"
    assert int(head.headers["content-length"]) == len(httpx.get(url).content)
    clock.advance(100)
    assert httpx.get(url).status_code == 404
    removed = capi.get(f"/v1/predictions/{created['id']}").json()
    assert removed["data_removed"] is True
    assert removed["output"] is None

    other = create(capi, IMAGEN_REF, {"prompt": "x"}).json()
    clock.advance(1)
    url = capi.get(f"/v1/predictions/{other['id']}").json()["output"]
    assert httpx.post(f"{clocked.base_url}/_double/expire").json() == {"expired_files": 1}
    assert httpx.get(url).status_code == 404
    assert capi.get(f"/v1/predictions/{other['id']}").json()["data_removed"] is True


SIZES = [
    (FLUX_SCHNELL_REF, {"aspect_ratio": "21:9"}, "webp", 1536, 640),
    (FLUX_SCHNELL_REF, {"aspect_ratio": "9:16", "megapixels": "0.25"}, "webp", 384, 672),
    (FLUX_SCHNELL_REF, {"output_format": "png", "aspect_ratio": "4:5"}, "png", 896, 1088),
    (f"{SDXL_REF}:{SDXL_VERSION}", {"width": 640, "height": 384}, "png", 640, 384),
    (f"{SDXL_REF}:{SDXL_VERSION}", {}, "png", 1024, 1024),
    (FLUX_PRO_REF, {"aspect_ratio": "custom", "width": 1000, "height": 700}, "webp", 992, 704),
    (FLUX_PRO_REF, {"aspect_ratio": "3:2", "output_format": "jpg"}, "jpg", 1216, 832),
    (IMAGEN_REF, {"aspect_ratio": "16:9"}, "jpg", 1408, 768),
    (IMAGEN_REF, {"aspect_ratio": "3:4", "output_format": "png"}, "png", 896, 1280),
]


@pytest.mark.parametrize(("ref", "inputs", "fmt", "width", "height"), SIZES)
def test_output_images_have_the_size_the_model_would_produce(
    fast: ReplicateDouble,
    api: httpx.Client,
    ref: str,
    inputs: dict[str, Any],
    fmt: str,
    width: int,
    height: int,
) -> None:
    output = run_sync(api, ref, {"prompt": "x", **inputs})["output"]
    single = ref in (FLUX_PRO_REF, IMAGEN_REF)
    assert isinstance(output, str) if single else isinstance(output, list)
    url = output if single else output[0]
    assert url.endswith(f".{fmt}")
    assert image_info(httpx.get(url).content) == (fmt, width, height)


def test_sdxl_sizes_not_divisible_by_8_fail_inside_the_model(
    fast: ReplicateDouble, api: httpx.Client
) -> None:
    body = run_sync(api, f"{SDXL_REF}:{SDXL_VERSION}", {"width": 1001})
    assert body["status"] == "failed"
    assert body["error"] == "`height` and `width` have to be divisible by 8 but are 1024 and 1001."


def test_deployments_route(api: httpx.Client) -> None:
    body = api.post("/v1/deployments/acme/sdxl/predictions", json={"input": {}}).json()
    assert body["deployment"] == "acme/sdxl"
    assert body["version"] == SDXL_VERSION
    assert api.post("/v1/deployments/acme/none/predictions", json={"input": {}}).status_code == 404


def test_validation_errors_have_the_real_shapes(api: httpx.Client) -> None:
    missing = create(api, FLUX_SCHNELL_REF, {"num_outputs": 5})
    assert missing.status_code == 422
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json() == {
        "detail": "- input: prompt is required\n"
        "- input.num_outputs: Must be less than or equal to 4\n",
        "status": 422,
        "title": "Input validation failed",
        "invalid_fields": [
            {"type": "required", "field": "input", "description": "prompt is required"},
            {
                "type": "number_lte",
                "field": "input.num_outputs",
                "description": "Must be less than or equal to 4",
            },
        ],
    }
    enum = create(api, IMAGEN_REF, {"prompt": "x", "output_format": "webp"}).json()
    assert (
        enum["detail"]
        == '- input.output_format: output_format must be one of the following: "jpg", "png"\n'
    )
    envelope = api.post("/v1/predictions", json={"input": {}, "model": "x"}).json()
    assert (
        envelope["detail"] == "- version is required\n- Additional property model is not allowed\n"
    )
    assert [f["field"] for f in envelope["invalid_fields"]] == ["", ""]
    small = create(api, FLUX_PRO_REF, {"prompt": "x", "width": 100}).json()
    assert small["invalid_fields"] == [
        {
            "type": "number_gte",
            "field": "input.width",
            "description": "Must be greater than or equal to 256",
        }
    ]
    typed = create(api, FLUX_SCHNELL_REF, {"prompt": "x", "num_outputs": "2"}).json()
    assert (
        typed["detail"] == "- input.num_outputs: Invalid type. Expected: integer, given: string\n"
    )


# -- scripted faults ------------------------------------------------------------------------------


def test_prediction_faults_over_http(fast: ReplicateDouble, api: httpx.Client) -> None:
    control = DoubleControl(fast.base_url)
    flux = {"prompt": "x", "megapixels": "0.25"}
    control.script("fail_prediction", error="boom")
    failed = run_sync(api, FLUX_SCHNELL_REF, flux)
    assert (failed["status"], failed["error"], failed["output"]) == ("failed", "boom", None)
    control.script("nsfw_drop_one")
    assert len(run_sync(api, FLUX_SCHNELL_REF, {**flux, "num_outputs": 3})["output"]) == 2
    control.script("nsfw_drop_one")
    nsfw = run_sync(api, FLUX_SCHNELL_REF, flux)
    assert nsfw["status"] == "failed"
    assert nsfw["error"].startswith("All generated images contained NSFW")
    control.script("empty_output", times=2)
    assert run_sync(api, FLUX_SCHNELL_REF, flux)["output"] == []
    assert run_sync(api, IMAGEN_REF, {"prompt": "x"})["output"] is None
    control.script("output_404")
    assert httpx.get(run_sync(api, FLUX_SCHNELL_REF, flux)["output"][0]).status_code == 404
    control.script("output_not_image")
    not_image = httpx.get(run_sync(api, FLUX_SCHNELL_REF, flux)["output"][0])
    assert not_image.headers["content-type"] == "image/webp"
    with pytest.raises(OSError):
        image_info(not_image.content)
    control.script("output_private_url")
    assert run_sync(api, FLUX_SCHNELL_REF, flux)["output"] == ["http://10.0.0.1/x.png"]
    control.script("output_wrong_size", width=10, height=20)
    wrong = run_sync(api, FLUX_SCHNELL_REF, flux)["output"][0]
    assert image_info(httpx.get(wrong).content) == ("webp", 10, 20)
    control.script("fail_prediction", model=SDXL_REF)  # filtered by model: flux is unaffected
    assert run_sync(api, FLUX_SCHNELL_REF, flux)["status"] == "processing"
    assert run_sync(api, f"{SDXL_REF}:{SDXL_VERSION}", {"width": 256, "height": 256})["error"]
    control.script_many([{"fault": "abort"}, {"fault": "cancel_prediction"}])
    assert run_sync(api, FLUX_SCHNELL_REF, flux)["status"] == "aborted"
    assert run_sync(api, FLUX_SCHNELL_REF, flux)["status"] == "canceled"
    control.script("stall_body", route="file", seconds=0.2)
    started = time.monotonic()
    stalled = httpx.get(run_sync(api, FLUX_SCHNELL_REF, flux)["output"][0])
    assert time.monotonic() - started >= 0.2
    assert image_info(stalled.content) == ("webp", 512, 512)
    control.script("never_finish")
    stuck = create(api, FLUX_SCHNELL_REF, flux).json()
    time.sleep(0.2)
    assert api.get(f"/v1/predictions/{stuck['id']}").json()["status"] == "processing"
    control.close()


def test_output_too_large_is_streamed(fast: ReplicateDouble, api: httpx.Client) -> None:
    fast.script("output_too_large")
    url = run_sync(api, FLUX_SCHNELL_REF, {"prompt": "x"})["output"][0]
    assert httpx.head(url).headers["content-length"] == str(60 * 1024 * 1024)
    with httpx.stream("GET", url) as response:
        assert sum(len(chunk) for chunk in response.iter_bytes()) == 60 * 1024 * 1024
    fast.script("output_too_large", size=3_000_000, chunked=True)
    url = run_sync(api, FLUX_SCHNELL_REF, {"prompt": "x"})["output"][0]
    with httpx.stream("GET", url) as response:
        assert "content-length" not in response.headers
        assert len(response.read()) == 3_000_000


def test_transport_faults(replicate_double: ReplicateDouble, api: httpx.Client) -> None:
    prediction = create(api, FLUX_SCHNELL_REF, {"prompt": "x"}).json()
    path = f"/v1/predictions/{prediction['id']}"
    replicate_double.script("reset_connection", route="get")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get(path)
    replicate_double.script("reset_connection", route="get", when="before_headers")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get(path)
    replicate_double.script("malformed_json", route="get")
    with pytest.raises(ValueError):
        api.get(path).json()
    replicate_double.script("hang", route="get", seconds=5)
    with pytest.raises(httpx.ReadTimeout):
        api.get(path, timeout=0.3)
    replicate_double.script("slow", route="get", seconds=0.3)
    started = time.monotonic()
    assert api.get(path).status_code == 200
    assert time.monotonic() - started >= 0.3
    for fault, status in [("json_500", 500), ("unavailable_503", 503), ("timeout_504", 504)]:
        replicate_double.script(fault, route="model")
        assert api.get(f"/v1/models/{SDXL_REF}").status_code == status
    assert api.get(path).status_code == 200  # everything consumed


def test_control_endpoints_validate_and_report(
    replicate_double: ReplicateDouble, api: httpx.Client
) -> None:
    base = replicate_double.base_url
    assert httpx.post(f"{base}/_double/script", json={"fault": "nope"}).status_code == 400
    assert httpx.post(f"{base}/_double/config", json={"nope": 1}).status_code == 400
    queued = httpx.post(f"{base}/_double/script", json={"faults": [{"fault": "abort"}]}).json()
    assert queued["queued"] == 1
    assert queued["pending"] == [{"fault": "abort"}]
    assert httpx.delete(f"{base}/_double/script").json() == {"pending": []}
    config = httpx.post(f"{base}/_double/config", json={"duration": 0.01}).json()
    assert config["duration"] == 0.01
    assert config["token"] == TOKEN
    httpx.post(f"{base}/_double/reset")
    assert httpx.get(f"{base}/_double/config").json()["duration"] == 0.2


def test_runs_as_a_process_steered_over_http() -> None:
    with DoubleProcess("--token", "r8_proc", "--duration", "0.05") as process:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", process.base_url)
        assert process.control is not None
        process.control.script("fail_prediction", error="scripted over HTTP")
        client = replicate.Client(api_token="r8_proc", base_url=process.base_url)
        client.poll_interval = 0.01
        with pytest.raises(ModelError, match="scripted over HTTP"):
            client.run(FLUX_SCHNELL_REF, input={"prompt": "x"})
        assert client.run(FLUX_SCHNELL_REF, input={"prompt": "x"})
        stats = process.control.stats()
        assert stats["creates"] == {"total": 2, "by_model": {FLUX_SCHNELL_REF: 2}}
        assert stats["faults_fired"] == ["fail_prediction"]
