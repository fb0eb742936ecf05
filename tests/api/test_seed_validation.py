"""Bad input to the seed endpoint is a 400 naming the field, never a 500, and no job starts."""

import pytest

GOOD = {"model": "owner/model", "prompt": "a cat", "num_images": 2, "width": 512, "height": 512}
URL = "/api/v1/images/generate"


def with_(**changes):
    body = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (with_(num_images="2"), "num_images"),
        (with_(num_images=2.5), "num_images"),
        (with_(num_images=True), "num_images"),
        (with_(num_images=0), "num_images"),
        (with_(num_images=-1), "num_images"),
        (with_(num_images=11), "num_images"),
        (with_(width="512"), "width"),
        (with_(width=512.5), "width"),
        (with_(width=False), "width"),
        (with_(width=0), "width"),
        (with_(width=-512), "width"),
        (with_(width=63), "width"),
        (with_(width=10**12), "width"),
        (with_(height=4097), "height"),
        (with_(height=None), "height"),
        (with_(model=...), "model"),
        (with_(prompt=...), "prompt"),
        (with_(num_images=...), "num_images"),
        (with_(width=...), "width"),
        (with_(height=...), "height"),
        (with_(prompt=""), "prompt"),
        (with_(prompt="   "), "prompt"),
        (with_(prompt="x" * 4001), "prompt"),
        (with_(prompt=42), "prompt"),
        (with_(model=7), "model"),
        (with_(model=""), "model"),
        (with_(model="not a model"), "model"),
        (with_(model="owner/name:nothex"), "model"),
        (with_(extra_field=1), "extra_field"),
        (with_(seed="1"), "seed"),
        (with_(seed=-1), "seed"),
        (with_(output_format="bmp"), "output_format"),
    ],
)
def test_bad_fields_are_400_naming_the_field(client, world, body, field):
    response = client.post(URL, json=body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert set(response.json()) == {"error"}
    assert field in message
    assert world.provider.calls == []


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"not json", {"content-type": "application/json"}),
        (b"", {"content-type": "application/json"}),
        (b"[1, 2]", {"content-type": "application/json"}),
        (b'"text"', {"content-type": "application/json"}),
        (b"null", {"content-type": "application/json"}),
        (b'{"model": "a/b"', {"content-type": "application/json"}),
        (
            b'{"model":"a/b","prompt":"x","num_images":1,"width":512,"height":512}',
            {"content-type": "text/plain"},
        ),
        (b"model=a/b&prompt=x", {"content-type": "application/x-www-form-urlencoded"}),
        (b'{"model":"a/b","prompt":"x","num_images":1,"width":512,"height":512}', {}),
    ],
)
def test_malformed_bodies_and_content_types_are_400(client, world, content, headers):
    response = client.post(URL, content=content, headers=headers)
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str)
    assert world.provider.calls == []


def test_good_request_returns_the_seed_shape(client, world):
    response = client.post(URL, json=GOOD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prompt"] == GOOD["prompt"]
    assert body["model"] == GOOD["model"]
    assert len(body["image_urls"]) == 2
    assert all(url.startswith("http://testserver/images/") for url in body["image_urls"])
    assert body["images_missing"] == 0
    assert response.headers["x-request-id"]


def test_whole_numbers_written_as_floats_are_integers(client, world):
    """JSON Schema's ``integer`` (the OpenAPI description's) admits 2.0; 2.5 stays a 400."""
    response = client.post(URL, json=with_(num_images=2.0, width=512.0, seed=7.0))
    assert response.status_code == 200, response.text
    assert len(response.json()["image_urls"]) == 2


def test_public_base_url_is_used_for_links(world):
    from fastapi.testclient import TestClient

    from imagegen.api.app import create_app

    settings = world.settings.model_copy(update={"public_base_url": "https://img.example.com/x"})
    with TestClient(create_app(settings, services=world.services)) as client:
        body = client.post(URL, json=GOOD).json()
    assert body["image_urls"][0].startswith("https://img.example.com/x/images/")


def test_unknown_route_is_json_404(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert "error" in response.json()


def test_generation_history_round_trip(client):
    created = client.post(URL, json=GOOD).json()
    one = client.get(f"/api/v1/generations/{created['id']}")
    assert one.status_code == 200
    assert one.json()["status"] == "succeeded"
    assert one.json()["image_urls"] == created["image_urls"]
    page = client.get("/api/v1/generations?limit=1").json()
    assert [item["id"] for item in page["data"]] == [created["id"]]
    assert client.get("/api/v1/generations/gen_missing").status_code == 404
    assert client.get("/api/v1/generations?limit=0").status_code == 400


def test_health_and_readiness(client, world, monkeypatch):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200

    async def down() -> None:
        raise RuntimeError("database down")

    monkeypatch.setattr(world.store, "check", down)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("error")
