"""``imagegen serve --workers N``: on PostgreSQL, N processes serve one socket, each a full peer,
their metrics in one multiprocess directory, and a second serve on the data directory is still
refused; on the SQLite default, several workers refuse to start with one line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import imagegen
from tests.e2e.test_scale_e2e import BODY, shared_settings
from tests.fakes.replicate_double import DoubleProcess

pytestmark = pytest.mark.e2e


def serve(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGEN_", "REPLICATE_"))}
    clean.update({"IMAGEGEN_DATA_DIR": str(tmp / "data"), **env})
    return subprocess.run(
        [sys.executable, "-m", "imagegen", "serve", *args],
        cwd=tmp,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_several_workers_on_sqlite_refuse_to_start_with_one_line(tmp_path: Path) -> None:
    for args, env in ((["--workers", "2"], {}), ([], {"IMAGEGEN_WORKERS": "3"})):
        refused = serve(tmp_path, *args, **env)
        assert refused.returncode == 2
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert "PostgreSQL" in lines[0]
        assert "IMAGEGEN_DATABASE_URL" in lines[0]


@pytest.mark.timeout(120)
def test_workers_on_postgresql_share_the_socket_and_the_metrics_and_lock_the_data_dir(
    tmp_path: Path, double: DoubleProcess, control: Any
) -> None:
    metrics = tmp_path / "metrics"
    with (
        shared_settings(IMAGEGEN_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(metrics)) as shared,
        imagegen(tmp_path / "a", double, IMAGEGEN_INSTANCE_ID="a", **shared) as server,
    ):

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=40)
            async with httpx.AsyncClient(timeout=60, limits=limits) as api:
                url = f"{server.base_url}/api/v1/images/generate"
                replies = await asyncio.gather(*(api.post(url, json=BODY) for _ in range(40)))
                return [reply.status_code for reply in replies]

        assert asyncio.run(burst()) == [200] * 40
        # Each worker writes its own values, named by its pid: two workers served.
        pids = {path.stem.rsplit("_", 1)[-1] for path in metrics.glob("*.db")}
        assert len(pids) == 2, sorted(metrics.iterdir())
        scraped = httpx.get(f"{server.base_url}/metrics", timeout=10).text
        generated = [
            float(line.rsplit(" ", 1)[1])
            for line in scraped.splitlines()
            if line.startswith("imagegen_generations_total{") and 'outcome="succeeded"' in line
        ]
        assert sum(generated) == 40  # a scrape of either worker counts both
        second = serve(tmp_path / "a", **shared, IMAGEGEN_PORT="1")
        assert second.returncode == 1
        assert "in use by another imagegen serve" in second.stderr
    assert control.stats()["creates"]["total"] == 40
