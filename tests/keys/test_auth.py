"""API keys over real HTTP: created with the CLI and the admin API, sent as Bearer tokens to
both endpoints and by the official SDK, refused with 401 in each endpoint's shape, revoked."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from tests.keys.conftest import Served, cli, cli_key

from imagegen.auth.authenticator import MALFORMED, MISSING, UNKNOWN

SEED = "/api/v1/images/generate"
OPENAI = "/v1/images/generations"
FLUX = {"model": "flux", "prompt": "a fox", "num_images": 1, "width": 512, "height": 512}
DALLE = {"model": "dall-e-3", "prompt": "a fox", "size": "1024x1024"}


def test_a_key_from_the_cli_works_on_both_endpoints(served: Served) -> None:
    key = cli_key(served.data_dir, "app")
    assert key.startswith("ig_")
    assert len(key) >= 3 + 43
    with served.client(key) as api:
        seed = api.post(SEED, json=FLUX)
        assert seed.status_code == 200, seed.text
        openai_style = api.post(OPENAI, json=DALLE)
        assert openai_style.status_code == 200, openai_style.text


def test_the_cli_prints_the_key_last_and_stores_only_its_hash(served: Served) -> None:
    output = cli(served.data_dir, "keys", "create", "cli-made", "--rpm", "5")
    key = output.strip().splitlines()[-1]
    assert key.startswith("ig_")
    database = (served.data_dir / "imagegen.db").read_bytes()
    assert key.encode() not in database
    listed = cli(served.data_dir, "keys", "list")
    assert "cli-made" in listed
    assert key[:10] in listed
    assert key not in listed
    assert "rpm 5" in listed


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, MISSING),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, MALFORMED),
        ({"Authorization": "Bearer not-an-imagegen-key"}, MALFORMED),
        ({"Authorization": "Bearer ig_" + "A" * 43}, UNKNOWN),
    ],
)
def test_no_valid_key_is_a_401_in_each_endpoints_shape(
    served: Served, headers: dict[str, str], message: str
) -> None:
    with served.client(None) as api:
        seed = api.post(SEED, json=FLUX, headers=headers)
        assert seed.status_code == 401
        assert seed.json() == {"error": message}
        assert seed.headers["www-authenticate"] == "Bearer"
        v1 = api.post(OPENAI, json=DALLE, headers=headers)
        assert v1.status_code == 401
        assert v1.json() == {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        for path in ("/api/v1/generations", "/v1/models", "/api/v1/usage", "/api/v1/keys"):
            assert api.get(path, headers=headers).status_code == 401, path


def test_health_and_images_need_no_key(served: Served) -> None:
    with served.client(None) as api:
        assert api.get("/healthz").status_code == 200


def test_the_playground_needs_no_key_while_the_api_does(served: Served) -> None:
    pages = ("/", "/history", "/generations/gen_anything", "/assets/playground.js")
    with served.client(None) as api:
        for path in pages:  # shells and assets: the data comes from the API, with the key
            assert api.get(path).status_code == 200, path
        assert api.get("/api/v1/generations").status_code == 401
        assert api.get("/assets/secret.js").status_code == 404


def test_the_openai_sdk_uses_an_imagegen_key(served: Served) -> None:
    key = served.new_key("sdk-app")
    sdk = openai.OpenAI(base_url=f"{served.base_url}/v1", api_key=key, max_retries=0)
    result = sdk.images.generate(model="dall-e-3", prompt="an otter", response_format="url")
    assert result.data
    assert result.data[0].url
    assert [m.id for m in sdk.models.list()]
    wrong = openai.OpenAI(base_url=f"{served.base_url}/v1", api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        wrong.images.generate(model="dall-e-3", prompt="an otter")
    assert raised.value.code == "invalid_api_key"


def test_the_admin_api_creates_lists_and_revokes(served: Served) -> None:
    with served.client(served.admin_key) as admin:
        created = admin.post(
            "/api/v1/keys",
            json={"name": "team", "rpm": 10, "images_per_day": 100, "models": ["flux"]},
        )
        assert created.status_code == 201, created.text
        body = created.json()
        secret = body.pop("key")
        assert secret.startswith("ig_")
        assert body["prefix"] == secret[:10]
        assert (body["rpm"], body["images_per_day"], body["models"]) == (10, 100, ["flux"])
        assert admin.post("/api/v1/keys", json={"name": "team"}).status_code == 400
        with served.client(secret) as team:
            assert team.post(SEED, json=FLUX).status_code == 200
        listed = {k["name"]: k for k in admin.get("/api/v1/keys").json()["data"]}
        assert set(listed) == {"admin", "team"}
        assert listed["team"]["usage_today"]["images"] == 1
        assert listed["team"]["last_used_at"] is None or listed["team"]["last_used_at"]
        revoked = admin.delete("/api/v1/keys/team")
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"]
        assert admin.delete("/api/v1/keys/nobody").status_code == 404
    with served.client(secret) as team:
        refused = team.post(SEED, json=FLUX)  # at once: no cache outlives a local revoke
        assert refused.status_code == 401
        assert refused.json() == {"error": UNKNOWN}


def test_only_admin_keys_manage_keys(served: Served) -> None:
    key = served.new_key("plain")
    with served.client(key) as plain:
        for response in (
            plain.get("/api/v1/keys"),
            plain.post("/api/v1/keys", json={"name": "mine"}),
            plain.delete("/api/v1/keys/admin"),
        ):
            assert response.status_code == 403
            assert response.json() == {"error": "this needs an admin key"}


def test_a_key_revoked_with_the_cli_stops_within_the_cache_time(start) -> None:  # type: ignore[no-untyped-def]
    served: Served = start(key_cache_seconds=0)
    key = served.new_key("soon-gone")
    with served.client(key) as api:
        assert api.get("/api/v1/generations").status_code == 200
        cli(served.data_dir, "keys", "revoke", "soon-gone")  # another process: no forget()
        assert api.get("/api/v1/generations").status_code == 401


def test_revoking_an_unknown_name_with_the_cli_fails(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from imagegen.cli import app

    result = CliRunner().invoke(
        app, ["keys", "revoke", "ghost"], env={"IMAGEGEN_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2
    assert "no key named 'ghost'" in result.output


def test_without_keys_the_first_key_comes_from_the_cli(tmp_path: Path) -> None:
    from tests.openai_api.harness import InProcessImagegen, settings_for

    settings = settings_for(tmp_path, None, "http://127.0.0.1:9")
    with InProcessImagegen(settings, {}) as server, httpx.Client(base_url=server.base_url) as api:
        assert api.get("/api/v1/generations").status_code == 200  # loopback, no keys: open
        refused = api.post("/api/v1/keys", json={"name": "first", "admin": True})
        assert refused.status_code == 403
        assert "imagegen keys create NAME --admin" in refused.json()["error"]
