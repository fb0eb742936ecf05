"""ReplicateProvider end to end over httpx.MockTransport: lifecycle, fan-out, deadline, cancel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import httpx
import pytest
import yaml
from tests.support.replicate_fixtures import RECORDINGS

from imagegen.config import Settings
from imagegen.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ModelNotFound,
    PredictionFailed,
    UnsupportedModel,
    UpstreamHTTPError,
    UpstreamUnavailable,
)
from imagegen.models import (
    GenerationRequest,
    PendingCreate,
    PredictionRecord,
    ProviderImage,
    StoredImage,
)
from imagegen.providers.base import GenerationContext, Provider
from imagegen.providers.replicate import ReplicateProvider, RetryPolicy, from_settings
from imagegen.providers.replicate.run import deadline_scope

from .test_replicate_client import VERSION, FakeClock, prediction_json, problem
from .test_replicate_schema import FLUX_11_PRO, FLUX_SCHNELL, LLAMA, SDXL, cog_model

BASE = "https://api.replicate.test"
FLUX = "black-forest-labs/flux-schnell"
PRO = "black-forest-labs/flux-1.1-pro"
Script = list[dict[str, Any]]


def url(pid: str, index: int = 0) -> str:
    return f"https://replicate.delivery/xezq/{pid}/out-{index}.webp"


def done(pid: str, count: int = 1) -> dict[str, Any]:
    return {"status": "succeeded", "output": [url(pid, i) for i in range(count)]}


RUNNING = {"status": "processing", "logs": " 50%|#####     | 2/4 [00:01<00:01]\n"}


class FakeReplicate:
    """Replicate as the provider sees it: a model document, scripted predictions, a call log.

    Each create takes the next script: its first state answers the create, the following ones
    answer successive GETs, the last one repeating.
    """

    def __init__(self, model: Mapping[str, Any] | httpx.Response, *scripts: Script) -> None:
        self.model = model
        self.scripts = list(scripts)
        self.states: dict[str, Script] = {}
        self.log: list[str] = []
        self.creates: list[httpx.Request] = []
        self.canceled: list[str] = []
        self.create_errors: list[httpx.Response] = []
        self.hang_gets = False

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        self.log.append(f"{method} {path}")
        if method == "GET" and path.startswith("/v1/models/"):
            return self._model(request)
        if method == "POST" and path.endswith("/cancel"):
            return self._cancel(path.split("/")[-2])
        if method == "POST":
            return self._create(request)
        if self.hang_gets:
            await asyncio.Event().wait()
        return self._state(path.rsplit("/", 1)[-1])

    def _model(self, request: httpx.Request) -> httpx.Response:
        if isinstance(self.model, httpx.Response):
            return self.model
        body = self.model if "/versions/" in request.url.path else cog_model(self.model)
        return httpx.Response(200, json=body)

    def _create(self, request: httpx.Request) -> httpx.Response:
        if self.create_errors:
            return self.create_errors.pop(0)
        self.creates.append(request)
        pid = f"p{len(self.creates)}"
        self.states[pid] = list(self.scripts.pop(0))
        return httpx.Response(201, json=self._json(pid))

    def _state(self, pid: str) -> httpx.Response:
        if pid not in self.states:
            return problem(
                404, {"detail": "The requested resource could not be found.", "status": 404}
            )
        if len(self.states[pid]) > 1:
            self.states[pid].pop(0)
        return httpx.Response(200, json=self._json(pid))

    def _cancel(self, pid: str) -> httpx.Response:
        self.canceled.append(pid)
        self.states[pid] = [{"status": "canceled"}]
        return httpx.Response(200, json=self._json(pid))

    def _json(self, pid: str) -> dict[str, Any]:
        return prediction_json(pid, **self.states[pid][0])

    def inputs(self) -> list[dict[str, Any]]:
        return [json.loads(r.content)["input"] for r in self.creates]


class Events:
    """A context whose callbacks append to the fake's log, so their order can be checked."""

    def __init__(self, fake: FakeReplicate, deadline: float) -> None:
        self.records: list[PredictionRecord] = []
        self.progress: list[float] = []

        async def on_prediction(record: PredictionRecord) -> None:
            fake.log.append(f"recorded {record.prediction_id}")
            self.records.append(record)

        async def on_progress(fraction: float) -> None:
            self.progress.append(fraction)

        self.context = GenerationContext(deadline, on_prediction, on_progress)


def make_provider(
    fake: FakeReplicate, clock: FakeClock | None = None, *, token: str | None = "r8_test", **kw: Any
) -> ReplicateProvider:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    timing: dict[str, Any] = {"sleep": clock.sleep, "clock": clock} if clock is not None else {}
    return ReplicateProvider(
        http,
        api_token=token,
        base_url=BASE,
        wait_seconds=kw.pop("wait_seconds", 60),
        poll_interval=kw.pop("poll_interval", 1.0),
        schema_cache_ttl=kw.pop("schema_cache_ttl", 60.0),
        retry=RetryPolicy(max_attempts=4, base_delay=0.5, jitter=0.0),
        **timing,
        **kw,
    )


def request(model: str = FLUX, num_images: int = 1, **extra: Any) -> GenerationRequest:
    extra.setdefault("width", 1024)
    extra.setdefault("height", 1024)
    return GenerationRequest(model=model, prompt="a cat", num_images=num_images, **extra)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_it_is_a_provider() -> None:
    provider: Provider = make_provider(FakeReplicate(FLUX_SCHNELL))
    assert provider.name == "replicate"


# --- the lifecycle ---------------------------------------------------------------------------


async def test_official_model_lifecycle(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [{"status": "starting"}, RUNNING, done("p1")])
    events = Events(fake, clock.now + 300)
    result = await make_provider(fake, clock).generate(request(), events.context)
    assert result.images == (ProviderImage(url("p1"), "p1"),)
    assert (result.requested, result.missing) == (1, 0)
    assert fake.log == [
        "GET /v1/models/black-forest-labs/flux-schnell",
        "POST /v1/models/black-forest-labs/flux-schnell/predictions",
        "recorded p1",
        "GET /v1/predictions/p1",
        "GET /v1/predictions/p1",
    ]
    assert events.records == [
        PredictionRecord(
            "p1",
            {"prompt": "a cat", "aspect_ratio": "1:1", "megapixels": "1", "num_outputs": 1},
            1,
        )
    ]
    assert events.progress == [0.5, 1.0]
    assert clock.sleeps == [1.0, 1.0]
    create = fake.creates[0]
    assert (create.headers["Prefer"], create.headers["Cancel-After"]) == ("wait=60", "300s")


async def test_versioned_model_lifecycle(clock: FakeClock) -> None:
    fake = FakeReplicate(SDXL, [{"status": "starting"}, done("p1", 2)])
    events = Events(fake, clock.now + 45)
    ref = f"stability-ai/sdxl:{VERSION}"
    result = await make_provider(fake, clock).generate(
        request(ref, 2, width=768, height=512, seed=5, negative_prompt="blur"), events.context
    )
    assert len(result.images) == 2
    assert fake.log[:2] == [
        f"GET /v1/models/stability-ai/sdxl/versions/{VERSION}",
        "POST /v1/predictions",
    ]
    body = json.loads(fake.creates[0].content)
    assert body == {
        "version": VERSION,
        "input": {
            "prompt": "a cat",
            "width": 768,
            "height": 512,
            "num_outputs": 2,
            "seed": 5,
            "negative_prompt": "blur",
        },
    }
    assert fake.creates[0].headers["Prefer"] == "wait=45"
    assert fake.creates[0].headers["Cancel-After"] == "45s"


async def test_a_sync_reply_that_succeeded_is_not_polled(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [done("p1")])
    result = await make_provider(fake, clock).generate(
        request(), Events(fake, clock.now + 60).context
    )
    assert len(result.images) == 1
    assert not any(line.startswith("GET /v1/predictions") for line in fake.log)


async def test_a_sync_reply_processing_with_files_is_final(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [{"status": "processing", "output": [url("p1")]}])
    result = await make_provider(fake, clock).generate(
        request(), Events(fake, clock.now + 60).context
    )
    assert result.images == (ProviderImage(url("p1"), "p1"),)
    assert not any(line.startswith("GET /v1/predictions") for line in fake.log)


async def test_a_processing_reply_without_files_is_polled(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [{"status": "processing", "output": None}, done("p1")])
    await make_provider(fake, clock).generate(request(), Events(fake, clock.now + 60).context)
    assert "GET /v1/predictions/p1" in fake.log


def handing_over(fake: FakeReplicate, deadline: float) -> tuple[Events, list[PredictionRecord]]:
    """A context with ``record_finished``: what it is handed goes to the list (and the log)."""
    events = Events(fake, deadline)
    handed: list[PredictionRecord] = []

    def record_finished(record: PredictionRecord) -> None:
        fake.log.append(f"handed {record.prediction_id}")
        handed.append(record)

    events.context = replace(events.context, record_finished=record_finished)
    return events, handed


@pytest.mark.parametrize(
    "reply",
    [done("p1"), {"status": "processing", "output": [url("p1")]}],
    ids=["succeeded", "processing-with-files"],
)
async def test_a_final_sync_reply_is_handed_over_without_waiting(
    clock: FakeClock, reply: dict[str, Any]
) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [reply])
    events, handed = handing_over(fake, clock.now + 60)
    result = await make_provider(fake, clock).generate(request(), events.context)
    assert result.images == (ProviderImage(url("p1"), "p1"),)
    assert [record.prediction_id for record in handed] == ["p1"]
    assert events.records == []  # not awaited through on_prediction
    assert fake.log[-1] == "handed p1"


async def test_a_reply_to_wait_on_is_recorded_before_polling_even_with_record_finished(
    clock: FakeClock,
) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [{"status": "starting"}, done("p1")])
    events, handed = handing_over(fake, clock.now + 60)
    await make_provider(fake, clock).generate(request(), events.context)
    assert handed == []
    assert fake.log.index("recorded p1") < fake.log.index("GET /v1/predictions/p1")


async def test_single_string_and_data_uri_outputs(clock: FakeClock) -> None:
    data = "data:image/png;base64,iVBORw0KGgo="
    fake = FakeReplicate(FLUX_11_PRO, [{"status": "succeeded", "output": data}])
    result = await make_provider(fake, clock).generate(
        request(PRO), Events(fake, clock.now + 60).context
    )
    assert result.images == (ProviderImage(data, "p1"),)


async def test_fewer_images_than_asked_are_reported_not_hidden(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [done("p1", 3)])
    result = await make_provider(fake, clock).generate(
        request(num_images=4), Events(fake, clock.now + 60).context
    )
    assert (len(result.images), result.requested, result.missing) == (3, 4, 1)


async def test_no_images_at_all_is_a_failure(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [{"status": "succeeded", "output": []}])
    with pytest.raises(PredictionFailed, match="no images"):
        await make_provider(fake, clock).generate(request(), Events(fake, clock.now + 60).context)


@pytest.mark.parametrize(
    ("final", "message"),
    [
        (
            {"status": "failed", "error": "All generated images contained NSFW content."},
            "All generated images contained NSFW content.",
        ),
        ({"status": "failed", "error": None}, "Replicate: prediction p1 failed"),
        ({"status": "canceled"}, "Replicate: prediction p1 was canceled"),
        ({"status": "aborted"}, "Replicate: prediction p1 was aborted before it started"),
    ],
)
async def test_terminal_failures(clock: FakeClock, final: dict[str, Any], message: str) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [{"status": "starting"}, final])
    with pytest.raises(PredictionFailed) as caught:
        await make_provider(fake, clock).generate(request(), Events(fake, clock.now + 60).context)
    assert (caught.value.message, caught.value.prediction_id) == (message, "p1")
    assert fake.canceled == []  # it already ended upstream


# --- refusals before anything is created -----------------------------------------------------


async def test_no_token_raises_the_seed_error_without_calling_replicate(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [done("p1")])
    provider = make_provider(fake, clock, token=None)
    with pytest.raises(UpstreamHTTPError) as caught:
        await provider.generate(request(), Events(fake, clock.now + 60).context)
    assert caught.value.message == (
        "ReplicateError Details:\ntitle: Unauthenticated\nstatus: 401\n"
        "detail: You did not pass an authentication token"
    )
    assert caught.value.status == 401
    with pytest.raises(UpstreamHTTPError):
        await provider.resume(request(), [PredictionRecord("p1", {}, 1)], Events(fake, 0).context)
    await provider.cancel([PredictionRecord("p1", {}, 1)])
    assert fake.log == []


@pytest.mark.parametrize("model", ["flux", "a/b/c", "o/n:", "o/n:xyz", f"o/n:{VERSION}0", " /n"])
async def test_malformed_model_refs_are_invalid_requests(clock: FakeClock, model: str) -> None:
    fake = FakeReplicate(FLUX_SCHNELL)
    with pytest.raises(InvalidRequest) as caught:
        await make_provider(fake, clock).generate(
            request(model), Events(fake, clock.now + 60).context
        )
    assert caught.value.field == "model"
    assert fake.log == []


async def test_a_text_model_is_refused_before_any_prediction(clock: FakeClock) -> None:
    fake = FakeReplicate(LLAMA, [done("p1")])
    with pytest.raises(UnsupportedModel) as caught:
        await make_provider(fake, clock).generate(
            request("meta/meta-llama-3-8b-instruct"), Events(fake, clock.now + 60).context
        )
    assert caught.value.model == "meta/meta-llama-3-8b-instruct"
    assert fake.creates == []


async def test_an_unknown_model_is_model_not_found_naming_it(clock: FakeClock) -> None:
    fake = FakeReplicate(
        problem(404, {"detail": "The requested resource could not be found.", "status": 404})
    )
    with pytest.raises(ModelNotFound) as caught:
        await make_provider(fake, clock).generate(
            request("o/missing"), Events(fake, clock.now + 60).context
        )
    assert caught.value.model == "o/missing"
    assert caught.value.message == (
        "model 'o/missing' was not found on Replicate\n"
        "ReplicateError Details:\nstatus: 404\ndetail: The requested resource could not be found."
    )
    assert fake.creates == []


async def test_an_unreadable_schema_falls_back_to_width_height_num_outputs(
    clock: FakeClock,
) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [done("p1")])
    fake.model = httpx.Response(200, json={"latest_version": None})
    await make_provider(fake, clock).generate(
        request(width=640, height=480), Events(fake, clock.now + 60).context
    )
    assert fake.inputs() == [{"prompt": "a cat", "width": 640, "height": 480, "num_outputs": 1}]


async def test_an_output_format_the_model_lacks_is_refused(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL)
    with pytest.raises(InvalidRequest) as caught:
        await make_provider(fake, clock).generate(
            request(output_format="gif"), Events(fake, clock.now + 60).context
        )
    assert caught.value.field == "output_format"
    assert fake.creates == []


async def test_schemas_are_cached_per_ref_until_the_ttl(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [done("p1")], [done("p2")], [done("p3")])
    provider = make_provider(fake, clock, schema_cache_ttl=60.0)
    for _ in range(2):
        await provider.generate(request(), Events(fake, clock.now + 60).context)
    clock.now += 61
    await provider.generate(request(), Events(fake, clock.now + 60).context)
    assert fake.log.count("GET /v1/models/black-forest-labs/flux-schnell") == 2


async def test_a_throttled_create_is_retried(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [done("p1")])
    throttled = {
        "detail": "Request was throttled. Your rate limit resets in ~4s.",
        "status": 429,
        "retry_after": 4,
    }
    fake.create_errors = [problem(429, throttled)]
    result = await make_provider(fake, clock).generate(
        request(), Events(fake, clock.now + 60).context
    )
    assert len(result.images) == 1
    assert clock.sleeps == [4.0]


async def test_a_create_that_fails_with_5xx_is_not_retried(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [done("p1")])
    fake.create_errors = [problem(502, "<html>bad gateway</html>")]
    with pytest.raises(UpstreamHTTPError) as caught:
        await make_provider(fake, clock).generate(request(), Events(fake, clock.now + 60).context)
    assert caught.value.message == "ReplicateError Details:\nstatus: 502"
    assert fake.log.count("POST /v1/models/black-forest-labs/flux-schnell/predictions") == 1


# --- fan-out ---------------------------------------------------------------------------------


async def test_ten_images_fan_out_over_three_predictions(clock: FakeClock) -> None:
    fake = FakeReplicate(
        FLUX_SCHNELL,
        [{"status": "starting"}, RUNNING, done("p1", 4)],
        [{"status": "starting"}, done("p2", 4)],
        [{"status": "starting"}, RUNNING, RUNNING, done("p3", 2)],
    )
    events = Events(fake, clock.now + 300)
    result = await make_provider(fake, clock).generate(
        request(num_images=10, seed=7), events.context
    )
    assert (len(result.images), result.requested) == (10, 10)
    assert [(i["num_outputs"], i["seed"]) for i in fake.inputs()] == [(4, 7), (4, 8), (2, 9)]
    assert sorted(r.images_requested for r in events.records) == [2, 4, 4]
    assert {image.prediction_id for image in result.images} == {"p1", "p2", "p3"}
    assert events.progress == sorted(events.progress)
    assert events.progress[-1] == 1.0
    assert pytest.approx(1 / 6) in events.progress  # one of three predictions half done


async def test_single_output_models_fan_out_one_prediction_per_image(clock: FakeClock) -> None:
    fake = FakeReplicate(
        FLUX_11_PRO, *[[{"status": "succeeded", "output": url(f"p{i}")}] for i in range(1, 4)]
    )
    result = await make_provider(fake, clock).generate(
        request(PRO, 3), Events(fake, clock.now + 60).context
    )
    assert len(result.images) == 3
    assert len(fake.creates) == 3


async def test_one_failing_prediction_keeps_what_the_others_made(clock: FakeClock) -> None:
    fake = FakeReplicate(
        FLUX_SCHNELL,
        [{"status": "starting"}, done("p1", 4)],
        [{"status": "starting"}, {"status": "failed", "error": "E005 flagged as sensitive"}],
        [{"status": "starting"}, RUNNING, done("p3", 4)],
    )
    result = await make_provider(fake, clock).generate(
        request(num_images=12), Events(fake, clock.now + 300).context
    )
    assert len(result.images) == 8
    assert result.missing == 4
    assert fake.canceled == []  # paid-for siblings run to the end


async def test_all_predictions_failing_raises_the_first_failure(clock: FakeClock) -> None:
    fake = FakeReplicate(
        FLUX_SCHNELL,
        [{"status": "starting"}, {"status": "failed", "error": "E005 flagged as sensitive"}],
        [{"status": "starting"}, {"status": "failed", "error": "E005 flagged as sensitive"}],
    )
    with pytest.raises(PredictionFailed, match="E005"):
        await make_provider(fake, clock).generate(
            request(num_images=8), Events(fake, clock.now + 300).context
        )


# --- deadline and cancellation ---------------------------------------------------------------


async def test_the_deadline_cancels_upstream_and_raises(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [{"status": "starting"}, RUNNING])
    events = Events(fake, clock.now + 10)
    with pytest.raises(DeadlineExceeded):
        await make_provider(fake, clock).generate(request(), events.context)
    assert fake.canceled == ["p1"]
    assert clock.now == pytest.approx(1010)
    assert fake.log[-1] == "POST /v1/predictions/p1/cancel"


async def test_a_passed_deadline_creates_nothing(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [done("p1")])
    with pytest.raises(DeadlineExceeded):
        await make_provider(fake, clock).generate(request(), Events(fake, clock.now - 1).context)
    assert fake.log == []


async def test_the_deadline_bounds_a_hanging_upstream_in_real_time() -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [{"status": "starting"}])
    fake.hang_gets = True
    loop = asyncio.get_running_loop()
    events = Events(fake, loop.time() + 0.3)
    with pytest.raises(DeadlineExceeded):
        await make_provider(fake, poll_interval=0.01).generate(request(), events.context)
    assert fake.canceled == ["p1"]
    assert loop.time() < events.context.deadline + 2


async def test_cancelling_the_task_cancels_upstream() -> None:
    fake = FakeReplicate(
        FLUX_SCHNELL, [{"status": "starting"}, RUNNING], [{"status": "starting"}, RUNNING]
    )
    events = Events(fake, asyncio.get_running_loop().time() + 30)
    provider = make_provider(fake, poll_interval=0.01)
    task = asyncio.create_task(provider.generate(request(num_images=8), events.context))
    while len(events.records) < 2:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(fake.canceled) == ["p1", "p2"]


async def test_cancel_posts_for_every_record(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [{"status": "starting"}, RUNNING])
    provider = make_provider(fake, clock)
    await provider.cancel([PredictionRecord("gone", {}, 1), PredictionRecord("p9", {}, 1)])
    assert sorted(fake.canceled) == ["gone", "p9"]


async def test_cancel_survives_errors(clock: FakeClock) -> None:
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if "p1" in request.url.path:
            return problem(
                404, {"detail": "The requested resource could not be found.", "status": 404}
            )
        raise httpx.ConnectError("refused")

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    provider = ReplicateProvider(
        http, api_token="r8", base_url=BASE, sleep=clock.sleep, clock=clock
    )
    await provider.cancel([PredictionRecord("p1", {}, 1), PredictionRecord("p2", {}, 1)])
    assert "/v1/predictions/p1/cancel" in seen
    assert "/v1/predictions/p2/cancel" in seen


# --- resume ----------------------------------------------------------------------------------


async def test_resume_polls_existing_predictions_without_creating(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL)
    fake.states = {"a": [RUNNING, done("a", 4)], "b": [done("b", 2)]}
    records = [
        PredictionRecord("a", {"num_outputs": 4}, 4),
        PredictionRecord("b", {"num_outputs": 2}, 2),
    ]
    events = Events(fake, clock.now + 60)
    result = await make_provider(fake, clock).resume(request(num_images=6), records, events.context)
    assert len(result.images) == 6
    assert fake.creates == []
    assert not any("/v1/models" in line for line in fake.log)
    assert events.records == []


async def test_resume_of_a_vanished_prediction_is_the_upstream_404(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL)
    with pytest.raises(UpstreamHTTPError) as caught:
        await make_provider(fake, clock).resume(
            request(), [PredictionRecord("zz", {}, 1)], Events(fake, clock.now + 60).context
        )
    assert caught.value.status == 404


async def test_resume_at_the_deadline_cancels(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL)
    fake.states = {"a": [RUNNING]}
    with pytest.raises(DeadlineExceeded):
        await make_provider(fake, clock).resume(
            request(), [PredictionRecord("a", {}, 1)], Events(fake, clock.now + 5).context
        )
    assert fake.canceled == ["a"]


# --- transport failures while polling --------------------------------------------------------


async def test_a_poll_that_keeps_failing_is_unavailable_and_cancels(clock: FakeClock) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [{"status": "starting"}])
    inner = fake

    async def flaky(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.startswith("/v1/predictions/"):
            raise httpx.ConnectError("Connection refused")
        return await inner(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(flaky))
    provider = ReplicateProvider(
        http,
        api_token="r8",
        base_url=BASE,
        sleep=clock.sleep,
        clock=clock,
        retry=RetryPolicy(max_attempts=3, jitter=0.0),
    )
    with pytest.raises(UpstreamUnavailable, match="Replicate: could not connect") as caught:
        await provider.generate(request(), Events(fake, clock.now + 60).context)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert fake.canceled == ["p1"]


# --- settings and recorded traffic -----------------------------------------------------------


async def test_from_settings(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    settings = Settings(
        _env_file=None,
        REPLICATE_API_KEY="r8_from_settings",
        REPLICATE_BASE_URL=BASE,
        replicate_wait=7,
    )  # type: ignore[call-arg]
    fake = FakeReplicate(FLUX_SCHNELL, [done("p1")])
    provider = from_settings(settings, httpx.AsyncClient(transport=httpx.MockTransport(fake)))
    await provider.generate(request(), GenerationContext(asyncio.get_running_loop().time() + 60))
    create = fake.creates[0]
    assert create.headers["Authorization"] == "Bearer r8_from_settings"
    assert create.headers["Prefer"] == "wait=7"
    assert str(create.url).startswith(BASE)


def _recorded(name: str) -> list[dict[str, Any]]:
    path = RECORDINGS / name
    return list(yaml.safe_load(path.read_text())["interactions"])


async def test_recorded_sdxl_run_is_understood(clock: FakeClock) -> None:
    """Replays what Replicate really answered to ``replicate.run`` (run.yaml) in order."""
    interactions = _recorded("run.yaml")
    by_route: dict[tuple[str, str], list[str]] = {}
    for item in interactions:
        response = item["response"]
        body = response.get("content") or response["body"]["string"]
        key = (item["request"]["method"], httpx.URL(item["request"]["uri"]).path)
        by_route.setdefault(key, []).append(body)

    def handler(request: httpx.Request) -> httpx.Response:
        bodies = by_route[(request.method, request.url.path)]
        body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
        return httpx.Response(201 if request.method == "POST" else 200, content=body.encode())

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    provider = ReplicateProvider(
        http, api_token="r8", base_url="https://api.replicate.com", sleep=clock.sleep, clock=clock
    )
    ref = "stability-ai/sdxl:39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
    events = Events(FakeReplicate(SDXL), clock.now + 300)
    result = await provider.generate(request(ref, width=512, height=512), events.context)
    assert [image.url for image in result.images] == [
        json.loads(by_route[("GET", "/v1/predictions/azaq55dbukgxg6kubr4k6g3pby")][-1])["output"][0]
    ]
    assert events.progress[-1] == 1.0


# --- the deadline scope itself ----------------------------------------------------------------


async def test_the_deadline_scope_raises_deadline_exceeded_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DeadlineExceeded) as caught:
        async with deadline_scope(started + 0.05, loop.time):
            await asyncio.sleep(5)
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert loop.time() - started < 2
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_the_deadline_scope_refuses_a_passed_deadline_before_the_body() -> None:
    loop = asyncio.get_running_loop()
    ran = False
    with pytest.raises(DeadlineExceeded):
        async with deadline_scope(loop.time() - 1, loop.time):
            ran = True
    assert not ran


async def test_the_deadline_scope_lets_the_body_through_and_its_errors_out() -> None:
    loop = asyncio.get_running_loop()
    async with deadline_scope(loop.time() + 5, loop.time):
        await asyncio.sleep(0)
    with pytest.raises(KeyError):
        async with deadline_scope(loop.time() + 5, loop.time):
            raise KeyError("own")
    with pytest.raises(DeadlineExceeded) as caught:  # a timeout of the body's own, as before
        async with deadline_scope(loop.time() + 5, loop.time):
            raise TimeoutError("inner")
    assert str(caught.value.__cause__) == "inner"


async def test_the_deadline_scope_passes_an_outer_cancel_on() -> None:
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()

    async def body() -> None:
        async with deadline_scope(loop.time() + 5, loop.time):
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- first creates, known before the job is written -------------------------------------------


async def test_first_creates_are_the_creates_generate_announces_once_the_schema_is_cached(
    clock: FakeClock,
) -> None:
    fake = FakeReplicate(
        FLUX_SCHNELL,
        [{"status": "starting"}, done("p1", 4)],
        [{"status": "starting"}, done("p2", 4)],
        [{"status": "starting"}, done("p3", 2)],
    )
    provider = make_provider(fake, clock)
    asked = request(num_images=10, seed=7)
    assert provider.first_creates(asked) == ()  # the schema is not known yet: it takes I/O
    announced: list[PendingCreate] = []

    async def on_create(pending: PendingCreate) -> None:
        announced.append(pending)

    context = replace(Events(fake, clock.now + 300).context, on_create=on_create)
    await provider.generate(asked, context)
    assert len(announced) == 3
    assert sorted(provider.first_creates(asked), key=repr) == sorted(announced, key=repr)
    fake.log.clear()
    provider.first_creates(asked)
    assert fake.log == []  # no upstream call


async def test_first_creates_are_none_when_generate_would_refuse_or_upload(
    clock: FakeClock,
) -> None:
    fake = FakeReplicate(FLUX_SCHNELL, [{"status": "starting"}, done("p1")])
    provider = make_provider(fake, clock)
    await provider.generate(request(), Events(fake, clock.now + 300).context)
    assert len(provider.first_creates(request())) == 1
    assert provider.first_creates(request(output_format="tiff")) == ()  # an InvalidRequest
    image = StoredImage("k" * 64, "image/png", 8, 8, 4)
    assert provider.first_creates(request(images=(image,))) == ()  # an edit uploads first
    assert make_provider(fake, clock, token=None).first_creates(request()) == ()
    clock.now += 61  # past the schema cache's time to live: generate reads it again
    assert provider.first_creates(request()) == ()
