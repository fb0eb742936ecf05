"""Keys and metrics with ``imagegen serve`` as a real process: the loopback default and the
refusal to start, JSON logs, and ``/metrics`` summed over processes (multiprocess mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.conftest import TOKEN, imagegen
from tests.fakes.replicate_double import DoubleProcess

pytestmark = pytest.mark.e2e

SEED = "/api/v1/images/generate"
BODY = {
    "model": "black-forest-labs/flux-schnell",
    "prompt": "a newt",
    "num_images": 1,
    "width": 256,
    "height": 256,
}


def imagegen_cli(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGEN_", "REPLICATE_"))}
    base.update({"IMAGEGEN_DATA_DIR": str(workdir / "data"), **env})
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "imagegen", *args],
        cwd=workdir,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bound_openly_without_keys_it_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    result = imagegen_cli(tmp_path, "serve", IMAGEGEN_HOST="0.0.0.0", IMAGEGEN_PORT="1")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "imagegen: refusing to serve on 0.0.0.0 without API keys: create one with "
        "`imagegen keys create NAME --admin` (or set IMAGEGEN_ALLOW_ANONYMOUS=true to serve "
        "without keys)"
    ]


def test_allow_anonymous_opens_it_and_a_key_closes_it(
    tmp_path: Path, double: DoubleProcess
) -> None:
    opened = imagegen(tmp_path, double, IMAGEGEN_HOST="0.0.0.0", IMAGEGEN_ALLOW_ANONYMOUS="true")
    with opened as server:
        assert httpx.get(f"{server.base_url}/api/v1/generations").status_code == 200
    created = imagegen_cli(tmp_path, "keys", "create", "ops", "--admin")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    with imagegen(tmp_path, double, IMAGEGEN_HOST="0.0.0.0") as server:
        assert httpx.get(f"{server.base_url}/api/v1/generations").status_code == 401
        headers = {"Authorization": f"Bearer {key}"}
        response = httpx.post(f"{server.base_url}{SEED}", json=BODY, headers=headers, timeout=60)
        assert response.status_code == 200, response.text


def test_loopback_serves_without_keys_by_default(tmp_path: Path, double: DoubleProcess) -> None:
    with imagegen(tmp_path, double) as server:
        response = httpx.post(f"{server.base_url}{SEED}", json=BODY, timeout=60)
        assert response.status_code == 200, response.text


def test_json_logs_from_a_real_process(tmp_path: Path, double: DoubleProcess) -> None:
    env = {"IMAGEGEN_LOG_FORMAT": "json", "IMAGEGEN_LOG_LEVEL": "info"}
    with imagegen(tmp_path, double, **env) as server:
        response = httpx.post(
            f"{server.base_url}{SEED}", json=BODY, headers={"x-request-id": "req-e2e"}, timeout=60
        )
        assert response.status_code == 200
        server.stop()
        lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    gid = response.json()["id"]
    states = [line for line in lines if line.get("generation_id") == gid]
    # A slot was free: the job was written running (one write, one line), then succeeded.
    assert [line["status"] for line in states] == ["running", "succeeded"]
    assert all(line["request_id"] == "req-e2e" for line in states)
    access_lines = [line for line in lines if line["logger"] == "imagegen.access"]
    (access,) = [line for line in access_lines if line["path"] == SEED]
    assert access["request_id"] == "req-e2e"
    assert access["status_code"] == 200


def test_metrics_are_summed_over_processes(tmp_path: Path, double: DoubleProcess) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared), "IMAGEGEN_METRICS_AUTH": "none"}
    with (
        imagegen(tmp_path / "a", double, **env) as first,
        imagegen(tmp_path / "b", double, **env) as second,
    ):
        for server, count in ((first, 1), (second, 2)):
            for _ in range(count):
                response = httpx.post(f"{server.base_url}{SEED}", json=BODY, timeout=60)
                assert response.status_code == 200
        text = httpx.get(f"{first.base_url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "imagegen_generations_total":
                assert sample.labels["outcome"] == "succeeded"
                total += sample.value
    assert total == 3
    assert TOKEN not in text
