"""Settings a user can act on (one line per bad setting, list settings as JSON or comma-separated,
unknown IMAGEGEN_* variables warned about) and logs without noise (one line per request)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from ipaddress import ip_network
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.api.conftest import FakeWorld
from tests.support.imagegen_process import ImagegenProcess

from imagegen.api.app import create_app
from imagegen.config import Settings, unknown_variables


def serve_with(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGEN_", "REPLICATE_"))}
    return subprocess.run(
        [sys.executable, "-m", "imagegen", "serve"],
        cwd=tmp_path,
        env={**clean, "IMAGEGEN_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMAGEGEN_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/33"),
        ("IMAGEGEN_WEBHOOK_ALLOWED_NETWORKS", '["127.0.0.0/8"'),
        ("IMAGEGEN_DOWNLOAD_ALLOWED_HOSTS", "[1, 2"),
        ("IMAGEGEN_WEBHOOK_RETRY_DELAYS", "5,soon"),
        ("IMAGEGEN_WEBHOOK_RETRY_DELAYS", "5,-1"),
        ("IMAGEGEN_PORT", "eighty"),
        ("IMAGEGEN_MAX_BODY_BYTES", "1"),
        ("REPLICATE_BASE_URL", "ftp://example.com"),
        ("IMAGEGEN_WORKERS", "0"),
        ("IMAGEGEN_WORKERS", "many"),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line_naming_it(tmp_path, name, value):
    result = serve_with(tmp_path, **{name: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"imagegen: invalid setting {name}: "), lines[0]


def test_workers_auto_is_one_per_core_and_a_number_is_taken_as_it_is():
    assert Settings(workers="auto").worker_count == max(1, os.cpu_count() or 1)
    assert Settings(workers="3").worker_count == 3
    assert Settings().worker_count == 1


@pytest.mark.parametrize(
    "value",
    ["127.0.0.0/8,10.0.0.0/8", " 127.0.0.0/8 , 10.0.0.0/8 ", '["127.0.0.0/8", "10.0.0.0/8"]'],
)
def test_list_settings_take_json_or_comma_separated_values(monkeypatch, value):
    monkeypatch.setenv("IMAGEGEN_WEBHOOK_ALLOWED_NETWORKS", value)
    monkeypatch.setenv("IMAGEGEN_DOWNLOAD_ALLOWED_HOSTS", "a.example.com,b.example.com:8443")
    monkeypatch.setenv("IMAGEGEN_WEBHOOK_RETRY_DELAYS", "1, 2.5")
    settings = Settings()
    assert settings.webhook_allowed_networks == [
        ip_network("127.0.0.0/8"),
        ip_network("10.0.0.0/8"),
    ]
    assert settings.download_allowed_hosts == ["a.example.com", "b.example.com:8443"]
    assert settings.webhook_retry_delays == [1.0, 2.5]


def test_unknown_imagegen_variables_are_named_from_the_environment_and_dotenv(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("IMAGEGEN_MAX_IMAGEZ=3\nIMAGEGEN_MAX_IMAGES=4\n")
    environ = {"IMAGEGEN_LOGLEVEL": "debug", "IMAGEGEN_PORT": "1", "REPLICATE_API_TOKEN": "r8_x"}
    assert unknown_variables(environ, env_file) == ["IMAGEGEN_LOGLEVEL", "IMAGEGEN_MAX_IMAGEZ"]


def test_serve_warns_about_what_it_ignores_and_logs_requests_without_library_noise(tmp_path):
    (tmp_path / ".env").write_text("IMAGEGEN_MAX_IMAGEZ=3\n")
    env = {"IMAGEGEN_LOG_LEVEL": "info", "IMAGEGEN_LOGLEVEL": "debug"}
    with ImagegenProcess(tmp_path, env) as server:
        import httpx

        response = httpx.get(f"{server.base_url}/healthz?token=s3cret", timeout=10)
        request_id = response.headers["x-request-id"]
        server.stop()
        log = server.log()
    lines = log.splitlines()
    assert any("IMAGEGEN_LOGLEVEL is not an imagegen setting" in line for line in lines), log
    assert any("IMAGEGEN_MAX_IMAGEZ is not an imagegen setting" in line for line in lines), log
    assert any("WARNING" in line and "no Replicate key is set" in line for line in lines), log
    assert not [line for line in lines if "alembic" in line], log
    access = [line for line in lines if "imagegen.access" in line and "/healthz" in line]
    assert len(access) >= 1, log
    assert "GET /healthz 200 " in access[-1]
    assert access[-1].endswith(request_id)
    assert "s3cret" not in log
    assert '"GET /healthz' not in log  # uvicorn's own access line is off


def test_one_log_line_per_request_with_key_name_when_recorded(tmp_path, caplog):
    world = FakeWorld(tmp_path)
    app = create_app(world.settings, services=world.services)

    @app.middleware("http")
    async def name_the_key(request, call_next):  # what an API-key check would record
        request.state.key_name = "ci-bot"
        return await call_next(request)

    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="imagegen.access"):
        client.get("/healthz?api_key=s3cret", headers={"x-request-id": "abc-123"})
        client.post("/api/v1/images/generate", content=b"{}", headers={"content-type": "x/y"})
    lines = [r.getMessage() for r in caplog.records if r.name == "imagegen.access"]
    assert len(lines) == 2, lines
    method, path, status, duration, request_id, key = lines[0].split(" ")
    assert (method, path, status, request_id, key) == (
        "GET",
        "/healthz",
        "200",
        "abc-123",
        "key=ci-bot",
    )
    assert duration.endswith("ms")
    assert lines[1].startswith("POST /api/v1/images/generate 400 ")
    assert all("s3cret" not in line for line in lines)
