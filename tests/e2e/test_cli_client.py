"""The ``imagegen`` command against a running server: the real command in a subprocess,
``imagegen serve`` and the Replicate double as processes on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from tests.e2e.conftest import imagegen
from tests.fakes.replicate_double import DoubleProcess
from tests.support.imagegen_process import ImagegenProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

COMMAND = Path(sys.executable).with_name("imagegen")


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, double: DoubleProcess
) -> Iterator[ImagegenProcess]:
    with imagegen(tmp_path_factory.mktemp("cli"), double) as process:
        yield process


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGEN_", "REPLICATE_"))}
    env.update({"COLUMNS": "220", "NO_COLOR": "1", **extra})
    return env


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        [str(COMMAND), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or environment(),
        check=False,
    )


def test_generate_shows_progress_and_prints_where_each_image_was_saved(
    site: ImagegenProcess, control: Any, tmp_path: Path
) -> None:
    control.configure(duration=2.0)
    result = cli(
        "generate", "a lighthouse", "-n", "2", "--width", "512", "--height", "512",
        "--seed", "7", "-o", str(tmp_path / "out"), "--url", site.base_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("generation gen_")
    progress = [line for line in lines if "] running " in line]
    assert len(progress) >= 2, result.stderr  # e.g. "[   0.9s] running 25%", "... running 50%"
    assert all(line.rstrip().endswith("%") for line in progress)
    assert any("] succeeded 100%" in line for line in lines), result.stderr
    paths = result.stdout.split()
    assert len(paths) == 2
    for path in paths:
        assert Path(path).parent == tmp_path / "out"
        with Image.open(path) as image:
            assert image.size == (512, 512)


def test_a_refused_request_exits_2_with_the_apis_message(site: ImagegenProcess) -> None:
    result = cli("generate", "a boat", "--width", "10", "--url", site.base_url)
    assert result.returncode == 2
    assert result.stderr.strip() == "imagegen: HTTP 400: width: must be an integer from 64 to 4096"
    assert result.stdout == ""


def test_a_failed_generation_exits_1_with_its_error(
    site: ImagegenProcess, control: Any, tmp_path: Path
) -> None:
    control.script("fail_prediction", error="the model fell over")
    result = cli("generate", "a boat", "-o", str(tmp_path), "--url", site.base_url)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("imagegen: generation gen_")
    assert "failed" in last
    assert "the model fell over" in last
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_cancels_the_generation_upstream_before_exiting(
    site: ImagegenProcess, control: Any, tmp_path: Path
) -> None:
    control.script("never_finish")
    process = subprocess.Popen(
        [str(COMMAND), "generate", "a slow boat", "-o", str(tmp_path), "--url", site.base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:  # wait until the prediction reports progress upstream
        seen.append(line)
        if re.search(r"\] running \d+%", line):
            break
    generation_id = seen[0].split()[-1]
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=30) == 130, "".join(seen) + rest
    assert f"interrupted: canceling {generation_id}" in rest
    assert f"imagegen: interrupted: generation {generation_id} is canceled" in rest
    job = httpx.get(f"{site.base_url}/api/v1/generations/{generation_id}").json()
    assert job["status"] == "canceled"

    def canceled_upstream() -> bool:
        stats = control.stats()
        statuses = [p["status"] for p in stats["predictions"]]
        return stats["cancels"] >= 1 and statuses == ["canceled"]

    wait_until(canceled_upstream, 15, "the double to see the prediction canceled")


def test_async_show_cancel_history_and_open(
    site: ImagegenProcess, control: Any, tmp_path: Path
) -> None:
    control.script("never_finish")
    env = environment(IMAGEGEN_URL=site.base_url)  # no --url: the variable is read
    started = cli("generate", "a kite", "--async", env=env)
    assert started.returncode == 0, started.stderr
    generation_id = started.stdout.strip()
    assert generation_id.startswith("gen_")

    def running() -> bool:
        job = httpx.get(f"{site.base_url}/api/v1/generations/{generation_id}").json()
        return bool(job["predictions"])

    wait_until(running, 15, "the prediction to be created")
    canceled = cli("cancel", generation_id, env=env)
    assert canceled.returncode == 0, canceled.stderr
    assert canceled.stdout.strip() == f"{generation_id}: canceled"
    again = cli("cancel", generation_id, env=env)
    assert again.stdout.strip() == f"{generation_id}: canceled"

    finished = cli("generate", "a sailing ship", "--async", env=env).stdout.strip()
    wait_until(
        lambda: httpx.get(f"{site.base_url}/api/v1/generations/{finished}").json()["completed_at"],
        15,
        "the second generation to end",
    )
    shown = cli("show", finished, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "succeeded" in shown.stdout
    assert "a sailing ship" in shown.stdout
    assert f"{site.base_url}/images/" in shown.stdout
    assert "inputs of prediction" in shown.stdout
    as_json = json.loads(cli("show", finished, "--json", env=env).stdout)
    assert as_json["id"] == finished

    table = cli("history", "--limit", "2", env=env)
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if "gen_" in line]
    assert finished in rows[0]
    assert "succeeded" in rows[0]
    assert generation_id in rows[1]
    assert "canceled" in rows[1]
    assert "more: imagegen history --limit 2 --cursor " in table.stdout

    missing = cli("show", "gen_nope", env=env)
    assert missing.returncode == 2
    assert missing.stderr.startswith("imagegen: HTTP 404: ")

    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(browser.stat().st_mode | stat.S_IEXEC)
    page = cli("open", finished, env={**env, "BROWSER": str(browser)})
    assert page.returncode == 0, page.stderr
    assert page.stdout.strip() == f"{site.base_url}/generations/{finished}"
    wait_until(opened.exists, 10, "the browser to be started")
    assert opened.read_text().strip() == f"{site.base_url}/generations/{finished}"
    headless = cli("open", finished, env={**env, "BROWSER": str(tmp_path / "no-such-browser")})
    assert headless.returncode == 0
    assert headless.stdout.strip() == f"{site.base_url}/generations/{finished}"


class _Refuses(BaseHTTPRequestHandler):
    """An imagegen with API keys, as far as a client can tell: 401 without the right key."""

    seen: list[str | None] = []

    def do_GET(self) -> None:
        _Refuses.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"error": "missing or invalid API key"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_api_key_is_sent_as_bearer_and_a_401_is_shown() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = cli("history", env=environment(IMAGEGEN_URL=url, IMAGEGEN_API_KEY="sk-cli"))
    finally:
        server.shutdown()
    assert result.returncode == 2
    assert result.stderr.strip() == "imagegen: HTTP 401: missing or invalid API key"
    assert _Refuses.seen == ["Bearer sk-cli"]
