"""The fault matrix: each way an upstream can fail, and what ``imagegen serve`` must answer.

One row per upstream and failure (the Replicate API's create, read, cancel and model reads; the
file host the outputs come from). Every row asserts, over real processes on loopback:

- the final HTTP status and the words of the error a client sees;
- that the request ended within the row's bound, itself within the deadline (no hang);
- the exact number of predictions created upstream (never two for one planned prediction);
- for the file-host rows, how many times the output file was requested (a transient failure is
  retried a bounded number of times within the download limit; an expired file is not);
- that no prediction is left running upstream once the request is answered (a prediction
  whose create reply was lost is ended by its ``Cancel-After``, as Replicate would);
- that imagegen's own record of the generation has ended too;
- that nothing ever connected to the private-address sentinel.

``tests/e2e/test_seed_contract.py`` spot-checks a few of these as the seed's contract; this is
the systematic table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from tests.fakes.replicate_double import DoubleControl
from tests.faults.conftest import DEADLINES, DOWNLOAD_TIMEOUT, MAX_IMAGE_BYTES, TOKEN, Sentinel
from tests.support.imagegen_process import ImagegenProcess, free_port

pytestmark = pytest.mark.e2e

TERMINAL = {"succeeded", "failed", "canceled", "aborted"}
STOPPED = {"canceled", "aborted"}
BACKSTOP = 2.0  # the runner stops a provider that overran its deadline this much later
SLACK = 1.5  # process scheduling on a busy 2-core machine


@dataclass(frozen=True)
class Row:
    id: str
    faults: tuple[dict[str, Any], ...]
    status: int
    error: tuple[str, ...] = ()  # words the error message must contain
    server: str = "main"
    config: dict[str, Any] = field(default_factory=dict)  # double settings for this row
    num_images: int = 1
    creates: int = 1  # predictions that must exist upstream, exactly
    within: float = 3.0  # seconds the request may take
    settle: float = 1.0  # seconds after the answer for every prediction to be terminal
    stopped: bool = False  # the prediction must have been canceled or aborted upstream
    images: int | None = None  # for 200: how many images come back
    downloads: int | range | None = None  # requests for output files the double saw
    absent: tuple[str, ...] = ()  # words neither the answer nor the stored record may contain


def _accepted(expected: int | range) -> range:
    return range(expected, expected + 1) if isinstance(expected, int) else expected


def canned(route: str, status: int, body: str) -> dict[str, Any]:
    """A ``status`` reply on ``route`` with a JSON, HTML or empty body."""
    if body == "json":
        return {"route": route, "status": status, "body": {"detail": "upstream broke"}}
    if body == "html":
        html = f"<html><body><h1>{status} Server Error</h1></body></html>"
        return {"route": route, "status": status, "body": html, "content_type": "text/html"}
    return {"route": route, "status": status, "body": None}


def _server_errors(route: str) -> list[Row]:
    rows = []
    for status in (500, 502, 503, 504):
        for body in ("json", "html", "empty"):
            if route == "create":  # a create is never retried: it may have started a prediction
                details = ("upstream broke",) if body == "json" else ()
                rows.append(
                    Row(
                        f"create-{status}-{body}",
                        (canned("create", status, body),),
                        502,
                        ("ReplicateError Details:", f"status: {status}", *details),
                        creates=0,
                    )
                )
            else:  # reads are retried: one failure costs a short backoff, not the generation
                rows.append(
                    Row(f"{route}-{status}-{body}-once", (canned(route, status, body),), 200)
                )
    return rows


CAP = "IMAGEGEN_UPSTREAM_MAX_RESPONSE_BYTES"
MAX_RETRY_AFTER = 60  # IMAGEGEN_UPSTREAM_MAX_RETRY_AFTER's default
ECHOED = f"your token {TOKEN} is not allowed (Authorization: Bearer {TOKEN})"


def throttled(route: str, retry_after: str, times: int = 1) -> dict[str, Any]:
    """A 429 whose only hint is the ``Retry-After`` header given (body without a wait)."""
    body = {"detail": "Request was throttled.", "status": 429}
    return {"route": route, "status": 429, "body": body, "headers": {"Retry-After": retry_after}}


def _hostile_upstream() -> list[Row]:
    """Replies meant to stall, exhaust or leak: oversize bodies, logs that are costly to scan,
    absurd ``Retry-After`` values, credentials echoed back."""
    big = 100_000_000
    return [
        *(
            Row(
                f"{route}-oversize-body{'-chunked' if chunked else ''}",
                (
                    {"route": route, "fault": "oversize_body", "size": big, "chunked": chunked},
                    *(({"fault": "never_finish"},) if route == "get" else ()),
                ),
                502,
                ("larger than", CAP),
                creates=1 if route == "get" else 0,
                stopped=route == "get",
            )
            for route in ("create", "get", "model")
            for chunked in (False, True)
        ),
        *(
            Row(
                f"prediction-hostile-logs-{kind}",
                ({"fault": "hostile_logs", "logs": kind, "size": size, "seconds": 0.5},),
                200,
            )
            for kind, size in (
                ("blank_lines", 20_000),
                ("long_line", 4_000_000),
                ("percent", 50_000),
            )
        ),
        *(
            Row(  # clamped to 60 s, still past the deadline: answered at once, 60 s passed on
                f"create-429-retry-after-{name}",
                (throttled("create", value),),
                429,
                ("status: 429",),
                creates=0,
            )
            for name, value in (
                ("huge", "99999999999999"),
                ("http-date-far-future", "Fri, 31 Dec 9999 23:59:59 GMT"),
            )
        ),
        *(
            Row(  # no usable hint: the retry waits its own short backoff, then succeeds
                f"create-429-retry-after-{name}", (throttled("create", value),), 200
            )
            for name, value in (
                ("negative", "-30"),
                ("garbage", "soon, maybe"),
                ("infinite", "1e999"),
                ("http-date-in-the-past", "Thu, 01 Jan 1970 00:00:00 GMT"),
            )
        ),
        Row(
            "get-429-retry-after-huge-until-deadline",
            (throttled("get", "99999999999999", times=100), {"fault": "never_finish"}),
            429,
            ("status: 429",),
            stopped=True,
        ),
        Row(
            "create-422-echoes-the-token",
            ({"route": "create", "status": 422, "body": {"detail": ECHOED, "status": 422}},),
            422,
            ("[redacted]",),
            creates=0,
            absent=(TOKEN,),
        ),
        Row(
            "model-401-echoes-the-token-at-length",
            (
                {
                    "route": "model",
                    "status": 401,
                    "body": {"title": "Unauthenticated", "detail": ECHOED * 500},
                },
            ),
            401,
            ("[redacted]", "(truncated)"),
            creates=0,
            absent=(TOKEN,),
        ),
        Row(
            "prediction-fails-echoing-the-token",
            ({"fault": "fail_prediction", "error": ECHOED},),
            502,
            ("[redacted]",),
            absent=(TOKEN,),
        ),
    ]


ROWS: list[Row] = [
    # --- the Replicate API: creating a prediction ------------------------------------------
    Row("create-429-retried", ({"fault": "rate_limit", "retry_after": 1},), 200),
    Row(
        "create-429-past-deadline",
        ({"fault": "rate_limit", "retry_after": 3600},),
        429,
        ("ReplicateError Details:", "status: 429", "throttled"),
        creates=0,
    ),
    *_server_errors("create"),
    Row(
        "create-reset-before-headers",
        ({"fault": "reset_connection", "when": "before_headers"},),
        502,
        ("Replicate: connection failed while creating a prediction",),
        creates=0,
    ),
    Row(
        "create-reset-mid-body",
        ({"fault": "reset_connection"},),
        502,
        ("Replicate: connection failed while creating a prediction",),
        creates=0,
    ),
    Row(
        "create-malformed-json",
        ({"fault": "malformed_json"},),
        502,
        ("Replicate: malformed reply while creating a prediction",),
        creates=0,
    ),
    Row(  # the create hangs past the deadline, then goes through: a prediction imagegen never
        # learns the id of. Its Cancel-After (scaled down 5x here) is what ends it upstream.
        "create-reply-lost-at-deadline",
        (
            {"fault": "slow", "seconds": DEADLINES["short"] + 0.5},
            {"fault": "never_finish"},
        ),
        504,
        ("did not finish before its deadline",),
        server="short",
        config={"cancel_after_scale": 0.2},
        within=DEADLINES["short"] + BACKSTOP,
        settle=3.0,
        stopped=True,
    ),
    # --- the Replicate API: reading a prediction -------------------------------------------
    # (a prediction that fails to be read to the end "never finishes", so that the cancel that
    # must follow is what stops it, not the prediction's own end)
    Row("get-429-retried", ({"route": "get", "fault": "rate_limit", "retry_after": 1},), 200),
    *_server_errors("get"),
    Row(
        "get-reset-before-headers-once",
        ({"route": "get", "fault": "reset_connection", "when": "before_headers"},),
        200,
    ),
    Row("get-reset-mid-body-once", ({"route": "get", "fault": "reset_connection"},), 200),
    Row(
        "get-malformed-json",
        ({"route": "get", "fault": "malformed_json"}, {"fault": "never_finish"}),
        502,
        ("Replicate: malformed reply while reading prediction",),
        stopped=True,
    ),
    Row(
        "get-429-until-deadline",
        (
            {"route": "get", "fault": "rate_limit", "retry_after": 1, "times": 100},
            {"fault": "never_finish"},
        ),
        429,
        ("status: 429",),
        server="short",
        within=DEADLINES["short"] + SLACK,
        stopped=True,
    ),
    Row(
        "get-503-until-deadline",
        ({**canned("get", 503, "json"), "times": 100}, {"fault": "never_finish"}),
        502,
        ("ReplicateError Details:", "status: 503"),
        server="short",
        within=DEADLINES["short"] + SLACK,
        stopped=True,
    ),
    Row(
        "get-read-hangs",
        ({"route": "get", "fault": "hang"}, {"fault": "never_finish"}),
        504,
        ("did not finish before its deadline",),
        server="short",
        within=DEADLINES["short"] + BACKSTOP,
        stopped=True,
    ),
    # --- the Replicate API: reading the model's schema -------------------------------------
    Row("model-429-retried", ({"route": "model", "fault": "rate_limit", "retry_after": 1},), 200),
    Row("model-503-once", (canned("model", 503, "html"),), 200),
    Row(
        "model-500-until-deadline",
        ({**canned("model", 500, "empty"), "times": 100},),
        502,
        ("ReplicateError Details:", "status: 500"),
        server="short",
        creates=0,
        within=DEADLINES["short"] + SLACK,
    ),
    Row(
        "api-connection-refused",
        (),
        502,
        ("Replicate: could not connect",),
        server="refused",
        creates=0,
        within=DEADLINES["refused"] + SLACK,
    ),
    # --- the prediction itself ---------------------------------------------------------------
    Row(
        "prediction-fails",
        ({"fault": "fail_prediction", "error": "CUDA out of memory"},),
        502,
        ("CUDA out of memory",),
    ),
    Row("prediction-canceled", ({"fault": "cancel_prediction"},), 502, ("was canceled",)),
    Row("prediction-aborted", ({"fault": "abort"},), 502, ("was aborted before it started",)),
    Row(
        "prediction-never-finishes",
        ({"fault": "never_finish"},),
        504,
        ("did not finish before its deadline",),
        server="short",
        within=DEADLINES["short"] + SLACK,
        stopped=True,
    ),
    Row(
        "prediction-never-starts",
        ({"fault": "never_start"},),
        504,
        ("did not finish before its deadline",),
        server="short",
        within=DEADLINES["short"] + SLACK,
        stopped=True,
    ),
    Row("prediction-empty-output", ({"fault": "empty_output"},), 502, ("returned no images",)),
    Row("prediction-fewer-images", ({"fault": "nsfw_drop_one"},), 200, num_images=3, images=2),
    Row("prediction-all-filtered", ({"fault": "nsfw_all"},), 502, ("NSFW",)),
    # --- the file host the outputs come from -------------------------------------------------
    # (downloads are retried after resets, timeouts, 408, 429 and 5xx, up to 4 attempts with
    # backoff of 0.2 s, 0.4 s, 0.8 s +-50% inside the 2 s download limit: 3 or 4 of them fit)
    Row(
        "output-404",
        ({"fault": "output_404"},),
        502,
        ("no longer available (HTTP 404)",),
        downloads=1,  # expired: never retried
    ),
    Row(
        "output-too-large",
        ({"fault": "output_too_large", "size": 2 * MAX_IMAGE_BYTES},),
        502,
        (f"larger than {MAX_IMAGE_BYTES} bytes",),
        downloads=1,
    ),
    Row(
        "output-too-large-chunked",
        ({"fault": "output_too_large", "size": 2 * MAX_IMAGE_BYTES, "chunked": True},),
        502,
        (f"larger than {MAX_IMAGE_BYTES} bytes",),
        downloads=1,
    ),
    Row(
        "output-not-an-image",
        ({"fault": "output_not_image"},),
        502,
        ("not a decodable image",),
        downloads=1,
    ),
    Row(
        "output-host-not-allowed",
        ({"fault": "output_private_url"},),
        502,
        ("refusing to download from 10.0.0.1: host not allowed",),
        downloads=0,
    ),
    Row(
        "output-private-address",
        ({"fault": "output_url", "url": "{sentinel}/x.png"},),
        502,
        ("private or reserved address 127.0.0.2",),
        downloads=0,
    ),
    Row(
        "output-redirect-to-private-address",
        ({"route": "file", "status": 302, "headers": {"location": "{sentinel}/x.png"}},),
        502,
        ("private or reserved address 127.0.0.2",),
        downloads=1,
    ),
    Row(
        "output-redirect-to-localhost",
        ({"route": "file", "status": 307, "headers": {"location": "http://localhost:{closed}/"}},),
        502,
        ("refusing to download from localhost: host not allowed",),
        downloads=1,
    ),
    Row(  # the provider's host (127.0.0.1) on a port that is not the provider's
        "output-provider-host-other-port",
        ({"fault": "output_url", "url": "http://127.0.0.1:{closed}/x.png"},),
        502,
        ("refusing to download from 127.0.0.1: host not allowed on port",),
        downloads=0,
    ),
    Row(
        "output-connection-refused",
        ({"fault": "output_url", "url": "http://127.0.0.1:{closed_allowed}/x.png"},),
        502,
        ("could not download from 127.0.0.1: connection error", "attempts"),
        within=DOWNLOAD_TIMEOUT + SLACK,
        downloads=0,
    ),
    Row(
        "output-reset-before-headers-once",
        ({"route": "file", "fault": "reset_connection", "when": "before_headers"},),
        200,
        downloads=2,
    ),
    Row(
        "output-reset-mid-body-once",
        ({"route": "file", "fault": "reset_connection"},),
        200,
        downloads=2,
    ),
    Row(
        "output-reset-mid-body-every-time",
        ({"route": "file", "fault": "reset_connection", "times": 100},),
        502,
        ("could not download from 127.0.0.1", "attempts"),
        within=DOWNLOAD_TIMEOUT + SLACK,
        downloads=range(3, 5),
    ),
    Row(
        "output-read-hangs",
        ({"route": "file", "fault": "hang"},),
        502,
        (f"timed out after {DOWNLOAD_TIMEOUT:g}s",),
        within=DOWNLOAD_TIMEOUT + SLACK,
        downloads=1,  # the hang spends the whole download limit: no time for another attempt
    ),
    Row(
        "output-slow-once",  # answers late but inside the limit
        ({"route": "file", "fault": "slow", "seconds": DOWNLOAD_TIMEOUT / 2},),
        200,
        downloads=1,
    ),
    *(
        Row(f"output-{status}-once", (canned("file", status, body),), 200, downloads=2)
        for status, body in ((500, "empty"), (502, "html"), (503, "html"), (504, "html"))
    ),
    Row("output-408-once", (canned("file", 408, "empty"),), 200, downloads=2),
    Row(
        "output-503-every-time",
        ({**canned("file", 503, "html"), "times": 100},),
        502,
        ("failed with HTTP 503", "attempts"),
        within=DOWNLOAD_TIMEOUT + SLACK,
        downloads=range(3, 5),
    ),
    Row(
        "output-429-retry-after",
        ({"route": "file", "fault": "rate_limit", "retry_after": 1},),
        200,
        downloads=2,
    ),
    Row(  # a Retry-After past the download limit: give up at once rather than wait it out
        "output-429-retry-after-past-limit",
        ({"route": "file", "fault": "rate_limit", "retry_after": 3600, "times": 100},),
        502,
        ("failed with HTTP 429",),
        within=DOWNLOAD_TIMEOUT,
        downloads=1,
    ),
    Row(
        "output-403",
        ({**canned("file", 403, "html"), "times": 100},),
        502,
        ("failed with HTTP 403",),
        downloads=1,  # a 4xx other than 408 / 429 is not retried
    ),
    # --- a hostile upstream ------------------------------------------------------------------
    *_hostile_upstream(),
    # --- cancelling fails: last, as its cancel retries outlive the request -----------------
    Row(
        "cancel-fails-cancel-after-ends-it",
        ({"fault": "never_finish"}, {**canned("cancel", 503, "json"), "times": 1000}),
        504,
        ("did not finish before its deadline",),
        server="short",
        within=DEADLINES["short"] + BACKSTOP + SLACK,
        settle=5.0 + SLACK,  # Replicate's minimum Cancel-After, 5 s from the create
        stopped=True,
    ),
]


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {key: _fill(item, names) for key, item in value.items()}
    return value


def _settled(upstream: DoubleControl, creates: int, seconds: float) -> dict[str, Any]:
    """The double's stats once ``creates`` predictions exist and all are terminal (or time's up)."""
    stop = time.monotonic() + seconds
    while True:
        stats = upstream.stats()
        done = all(p["status"] in TERMINAL for p in stats["predictions"])
        if (done and len(stats["predictions"]) >= creates) or time.monotonic() > stop:
            return stats
        time.sleep(0.05)


def _record(server: ImagegenProcess, prompt: str) -> dict[str, Any] | None:
    page = httpx.get(f"{server.base_url}/api/v1/generations", params={"limit": 20}, timeout=10)
    return next((item for item in page.json()["data"] if item["prompt"] == prompt), None)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_fault(
    row: Row,
    upstream: DoubleControl,
    servers: dict[str, ImagegenProcess],
    sentinel: Sentinel,
    closed_port: int,
) -> None:
    if row.config:
        upstream.configure(**row.config)
    names = {
        "sentinel": sentinel.url,
        "closed": str(free_port()),
        "closed_allowed": str(closed_port),
    }
    if row.faults:
        upstream.script_many([_fill(fault, names) for fault in row.faults])
    server, deadline = servers[row.server], DEADLINES[row.server]
    prompt = f"fault matrix: {row.id}"
    body = {
        "model": "black-forest-labs/flux-schnell",
        "prompt": prompt,
        "num_images": row.num_images,
        "width": 512,
        "height": 512,
    }

    started = time.monotonic()
    response = httpx.post(
        f"{server.base_url}/api/v1/images/generate", json=body, timeout=deadline + 15
    )
    elapsed = time.monotonic() - started

    assert response.status_code == row.status, response.text
    answer = response.json()
    if row.status == 200:
        assert len(answer["image_urls"]) == (row.images or row.num_images)
        assert answer["images_missing"] == row.num_images - len(answer["image_urls"])
    else:
        assert set(answer) == {"error"}
        for words in row.error:
            assert words in answer["error"], answer["error"]
    if row.status == 429:
        assert 1 <= int(response.headers["retry-after"]) <= MAX_RETRY_AFTER
    for words in row.absent:
        assert words not in response.text
    assert elapsed <= min(row.within, deadline + BACKSTOP + SLACK), f"took {elapsed:.2f}s"

    stats = _settled(upstream, row.creates, row.settle)
    statuses = [p["status"] for p in stats["predictions"]]
    assert stats["creates"]["total"] == row.creates, statuses
    assert all(status in TERMINAL for status in statuses), f"left running upstream: {statuses}"
    if row.stopped:
        assert statuses
        assert all(status in STOPPED for status in statuses), statuses
    for prediction in stats["predictions"]:  # each carries Replicate's own backstop
        assert prediction["cancel_after"], prediction
    if row.downloads is not None:
        downloads = stats["requests"].get("file", 0)
        assert downloads in _accepted(row.downloads), f"{downloads} requests for output files"

    record = _record(server, prompt)
    assert record is not None
    assert record["status"] in ({"succeeded"} if row.status == 200 else {"failed", "canceled"})
    for words in row.absent:
        assert words not in str(record)
    assert sentinel.connections == 0
