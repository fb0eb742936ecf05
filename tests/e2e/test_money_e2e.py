"""Never paying twice, over real processes (``imagegen serve`` and the Replicate double):

- ``kill -9`` while creates are held open in Replicate's sync mode (their prediction ids not yet
  known): after the restart every job ends, and upstream there is one prediction per job;
- a cancel right after the create stops the upstream prediction within a second (default
  settings), instead of letting a short model finish and bill;
- a second ``imagegen serve`` on the same data directory or port stops at once and leaves the
  first one's jobs alone (nothing adopted, nothing canceled upstream);
- SIGTERM hands the jobs back (nothing canceled upstream); the restart finishes them, creating
  nothing twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import TOKEN
from tests.e2e.test_jobs_e2e import ASYNC, BODY, wait_until
from tests.support.imagegen_process import ImagegenProcess, free_port

pytestmark = pytest.mark.e2e

ENV = {
    "REPLICATE_API_KEY": TOKEN,
    "IMAGEGEN_POLL_INTERVAL": "0.1",
    "IMAGEGEN_REQUEST_TIMEOUT": "60",
}


def server(tmp: Path, double: Any, **env: str) -> ImagegenProcess:
    return ImagegenProcess(tmp, {**ENV, "REPLICATE_BASE_URL": double.base_url, **env})


def jobs_of(api: httpx.Client, ids: list[str]) -> list[dict[str, Any]]:
    return [api.get(f"/api/v1/generations/{i}").json() for i in ids]


def submit(api: httpx.Client, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        created = api.post("/api/v1/images/generate", json=BODY, headers=ASYNC)
        assert created.status_code == 202, created.text
        ids.append(created.json()["id"])
    return ids


def all_ended(api: httpx.Client, ids: list[str], timeout: float = 45) -> list[dict[str, Any]]:
    def ended() -> list[dict[str, Any]]:
        jobs = jobs_of(api, ids)
        return jobs if all(j["completed_at"] for j in jobs) else []

    return wait_until(ended, timeout, "every job to end")  # type: ignore[no-any-return]


def test_kill_9_while_creates_are_in_flight_then_restart_pays_for_each_job_once(
    tmp_path, double, control
):
    control.configure(duration=6.0)  # longer than the sync wait: the creates stay open
    env = {"IMAGEGEN_REPLICATE_WAIT": "5"}
    first = server(tmp_path, double, **env).start()
    try:
        with httpx.Client(base_url=first.base_url, timeout=10) as api:
            ids = submit(api, 3)
            wait_until(lambda: control.stats()["creates"]["total"] == 3, 15, "three creates")
            # The creates are held open upstream: imagegen does not know their ids yet.
            assert all(job["predictions"] == [] for job in jobs_of(api, ids))
            assert {p["prefer"] for p in control.stats()["predictions"]} == {"wait=5"}
    finally:
        first.kill()  # SIGKILL, inside the creates

    with (
        server(tmp_path, double, **env) as second,
        httpx.Client(base_url=second.base_url, timeout=10) as api,
    ):
        jobs = all_ended(api, ids)
        assert [j["status"] for j in jobs] == ["succeeded"] * 3, jobs
        stats = control.stats()
        assert stats["creates"]["total"] == 3  # the orphans were adopted, none created again
        assert stats["lists"] >= 1
        adopted = sorted(j["predictions"][0]["id"] for j in jobs)
        assert adopted == sorted(p["id"] for p in stats["predictions"])


def test_a_cancel_right_after_the_create_stops_the_upstream_prediction_within_a_second(
    tmp_path, double, control
):
    control.configure(duration=2.0)
    with (
        server(tmp_path, double) as running,  # default settings
        httpx.Client(base_url=running.base_url, timeout=10) as api,
    ):
        api.post("/api/v1/images/generate", json={**BODY, "prompt": "warm the schema cache"})
        control.reset()
        control.configure(duration=2.0)
        [job] = submit(api, 1)
        wait_until(lambda: control.stats()["creates"]["total"] == 1, 10, "the create")
        asked = time.time()
        canceled = api.post(f"/api/v1/generations/{job}/cancel")
        assert canceled.json()["status"] == "canceled"

        def stopped() -> dict[str, Any] | None:
            [prediction] = control.stats()["predictions"]
            return prediction if prediction["completed"] else None

        prediction = wait_until(stopped, 5, "the prediction to stop upstream")
    assert prediction["status"] == "canceled"  # not "succeeded": it did not run and bill
    assert prediction["completed"] - asked <= 1.0


def serve_once(workdir: Path, data_dir: Path, port: int, env: dict[str, str]) -> str:
    """Run ``imagegen serve`` that must refuse to start; its exit code is 1; what it printed."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGEN_", "REPLICATE_"))}
    full.update(env)
    full.update({"IMAGEGEN_DATA_DIR": str(data_dir), "IMAGEGEN_PORT": str(port)})
    workdir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "imagegen", "serve"],
        cwd=workdir,
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1, done.stderr
    return done.stderr


def test_a_second_serve_on_the_same_data_dir_or_port_leaves_the_first_alone(
    tmp_path, double, control
):
    control.configure(duration=4.0)
    first = server(tmp_path / "first", double)
    env = {**ENV, "REPLICATE_BASE_URL": double.base_url}
    data = tmp_path / "first" / "data"
    with first, httpx.Client(base_url=first.base_url, timeout=10) as api:
        [job] = submit(api, 1)
        wait_until(lambda: jobs_of(api, [job])[0]["predictions"], 10, "the prediction")
        same_both = serve_once(tmp_path / "second", data, first.port, env)
        same_dir = serve_once(tmp_path / "third", data, free_port(), env)
        same_port = serve_once(tmp_path / "fourth", tmp_path / "other", first.port, env)
        assert "is in use by another imagegen serve" in same_both
        assert "is in use by another imagegen serve (pid " in same_dir
        assert f"cannot listen on 127.0.0.1:{first.port}" in same_port
        [done] = all_ended(api, [job])
    assert done["status"] == "succeeded"
    stats = control.stats()
    assert (stats["creates"]["total"], stats["cancels"]) == (1, 0)


def test_sigterm_hands_jobs_back_and_the_restart_finishes_them_paying_once(
    tmp_path, double, control
):
    control.configure(duration=3.0)
    env = {"IMAGEGEN_REPLICATE_MAX_CONCURRENCY": "1"}  # one runs, one waits in the queue
    first = server(tmp_path, double, **env).start()
    with httpx.Client(base_url=first.base_url, timeout=10) as api:
        ids = submit(api, 2)
        wait_until(lambda: jobs_of(api, ids)[0]["predictions"], 10, "the first prediction")
    first.stop()  # SIGTERM: a graceful shutdown
    stats = control.stats()
    assert stats["cancels"] == 0
    assert [p["status"] for p in stats["predictions"]] in (["starting"], ["processing"])

    with (
        server(tmp_path, double, **env) as second,
        httpx.Client(base_url=second.base_url, timeout=10) as api,
    ):
        jobs = all_ended(api, ids)
    assert [j["status"] for j in jobs] == ["succeeded"] * 2, jobs
    stats = control.stats()
    assert (stats["creates"]["total"], stats["cancels"]) == (2, 0)


@pytest.mark.parametrize("wait", ["0", "5"])
def test_kill_9_at_many_instants_then_restart_pays_for_each_job_once(
    tmp_path, double, control, wait
):
    # Each round submits jobs and kills the server a little later: before, during and after
    # their creates, while polling, while storing outputs. One restart after the last round.
    control.configure(duration=1.0)
    env = {"IMAGEGEN_REPLICATE_WAIT": wait}
    ids: list[str] = []
    for delay in (0.0, 0.03, 0.1, 0.3, 0.8):
        process = server(tmp_path, double, **env).start()
        try:
            with httpx.Client(base_url=process.base_url, timeout=10) as api:
                ids += submit(api, 2)
                time.sleep(delay)
        finally:
            process.kill()
    with (
        server(tmp_path, double, **env) as last,
        httpx.Client(base_url=last.base_url, timeout=10) as api,
    ):
        jobs = all_ended(api, ids, timeout=60)
    assert [j["status"] for j in jobs] == ["succeeded"] * len(ids), jobs
    stats = control.stats()
    assert stats["creates"]["total"] == len(ids)
    recorded = sorted(p["id"] for j in jobs for p in j["predictions"])
    assert recorded == sorted(p["id"] for p in stats["predictions"])
