"""A generation belongs to the key that created it: every route taking an id answers another
key with a 404 (exactly as for an unknown id), lists show a key its own, admin keys see all;
``Idempotency-Key`` values are scoped per key."""

from __future__ import annotations

from tests.fakes.replicate_double import ReplicateDouble
from tests.keys.conftest import Served

SEED = "/api/v1/images/generate"
FLUX = {"model": "flux", "prompt": "a heron", "num_images": 1, "width": 512, "height": 512}
ASYNC = {"Prefer": "respond-async"}


def test_another_keys_generation_is_a_404_on_every_route(
    served: Served, replicate_double: ReplicateDouble
) -> None:
    replicate_double.configure(duration=30)  # stays running while the other key pokes at it
    alice, bob = served.new_key("alice"), served.new_key("bob")
    with served.client(alice) as a, served.client(bob) as b, served.client(served.admin_key) as adm:
        job = a.post(SEED, json=FLUX, headers=ASYNC).json()
        gid = job["id"]
        unknown = b.get("/api/v1/generations/gen_00000000000000000000000000")
        assert unknown.status_code == 404
        for method, path in (
            ("GET", f"/api/v1/generations/{gid}"),
            ("GET", f"/api/v1/generations/{gid}/events"),
            ("POST", f"/api/v1/generations/{gid}/cancel"),
        ):
            response = b.request(method, path)
            assert response.status_code == 404, (method, path)
            assert response.json() == {"error": f"generation {gid!r} not found"}
        assert a.get(f"/api/v1/generations/{gid}").json()["status"] in ("queued", "running")
        assert [g["id"] for g in b.get("/api/v1/generations").json()["data"]] == []
        assert [g["id"] for g in a.get("/api/v1/generations").json()["data"]] == [gid]
        assert [g["id"] for g in adm.get("/api/v1/generations").json()["data"]] == [gid]
        assert adm.get(f"/api/v1/generations/{gid}").status_code == 200
        canceled = a.post(f"/api/v1/generations/{gid}/cancel")
        assert canceled.json()["status"] == "canceled"


def test_admin_keys_cancel_anyones_generation(
    served: Served, replicate_double: ReplicateDouble
) -> None:
    replicate_double.configure(duration=30)
    alice = served.new_key("alice")
    with served.client(alice) as a, served.client(served.admin_key) as adm:
        gid = a.post(SEED, json=FLUX, headers=ASYNC).json()["id"]
        assert adm.post(f"/api/v1/generations/{gid}/cancel").json()["status"] == "canceled"


def test_idempotency_keys_are_scoped_per_api_key(served: Served) -> None:
    alice, bob = served.new_key("alice"), served.new_key("bob")
    same = {"Idempotency-Key": "order-42"}
    with served.client(alice) as a, served.client(bob) as b:
        first = a.post(SEED, json=FLUX, headers=same)
        again = a.post(SEED, json=FLUX, headers=same)
        other = b.post(SEED, json=FLUX, headers=same)
        assert first.status_code == again.status_code == other.status_code == 200
        assert first.json()["id"] == again.json()["id"]
        assert other.json()["id"] != first.json()["id"]
        assert b.get(f"/api/v1/generations/{other.json()['id']}").status_code == 200
        conflict = b.post(SEED, json={**FLUX, "prompt": "other"}, headers=same)
        assert conflict.status_code == 422
        assert conflict.json()["error"] == (
            "Idempotency-Key 'order-42' was already used with a different request"
        )
