"""A model that prints hostile logs cannot freeze imagegen: over real HTTP, ``imagegen serve``
polls a prediction whose logs end in 40,000 blank lines (read again on every poll, 20 a second),
and ``/healthz`` keeps answering at once the whole time.

With the old multi-line progress regex each poll of such logs took seconds of event-loop time
(quadratic backtracking over the newlines), so ``/healthz`` stalled for as long.
"""

from __future__ import annotations

import time

import httpx
import pytest
from tests.fakes.replicate_double import DoubleControl
from tests.support.imagegen_process import ImagegenProcess

pytestmark = pytest.mark.e2e

PROCESSING = 4.0  # seconds the prediction prints its logs (and imagegen polls it)
MAX_STALL = 1.0  # generous: a busy 2-core machine, yet far below one old-regex poll


@pytest.mark.parametrize(
    ("kind", "size"),
    [("blank_lines", 40_000), ("percent", 100_000), ("long_line", 8_000_000)],
)
def test_healthz_stays_responsive_while_hostile_logs_are_polled(
    kind: str, size: int, upstream: DoubleControl, servers: dict[str, ImagegenProcess]
) -> None:
    server = servers["main"]
    upstream.script("hostile_logs", logs=kind, size=size, seconds=PROCESSING)
    body = {
        "model": "black-forest-labs/flux-schnell",
        "prompt": f"hostile logs {kind}",
        "num_images": 1,
        "width": 512,
        "height": 512,
    }
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        created = client.post(
            "/api/v1/images/generate", json=body, headers={"Prefer": "respond-async"}
        )
        assert created.status_code == 202, created.text
        location = created.headers["location"]

        polls_seen, stalls = 0, []
        end = time.monotonic() + PROCESSING - 0.5
        while time.monotonic() < end:
            started = time.monotonic()
            assert client.get("/healthz").status_code == 200
            stalls.append(time.monotonic() - started)
            polls_seen = upstream.stats()["requests"].get("get", 0)
            time.sleep(0.05)

        done = client.get(location).json()
        while done["status"] not in ("succeeded", "failed", "canceled"):
            time.sleep(0.1)
            done = client.get(location).json()

    assert polls_seen >= 5, "imagegen did not poll the prediction while it printed its logs"
    assert max(stalls) < MAX_STALL, f"/healthz stalled {max(stalls):.2f}s"
    assert done["status"] == "succeeded", done
