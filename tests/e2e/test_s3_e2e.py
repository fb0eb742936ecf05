"""Images in S3 (SeaweedFS), over real HTTP: imagegen processes sharing one bucket.

An image generated through one process is served by another, byte for byte, streamed with the
same headers as local disk, or by a redirect to a presigned URL; ``/readyz`` follows S3 down
and back up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import obstore
import pytest
from tests.e2e.conftest import imagegen
from tests.fakes.replicate_double import DoubleProcess
from tests.support.imagegen_process import ImagegenProcess
from tests.support.seaweedfs import SeaweedFS

pytestmark = pytest.mark.e2e

BODY = {
    "model": "black-forest-labs/flux-schnell",
    "prompt": "a lighthouse in a storm",
    "num_images": 1,
    "width": 512,
    "height": 512,
}
IMMUTABLE = "public, max-age=31536000, immutable"


def s3_env(seaweedfs: SeaweedFS, prefix: str, **extra: str) -> dict[str, str]:
    return {
        **seaweedfs.env,
        "IMAGEGEN_STORAGE_URL": f"s3://{seaweedfs.bucket}/{prefix}",
        **extra,
    }


@pytest.fixture
def replica(
    tmp_path: Path, double: DoubleProcess, seaweedfs: SeaweedFS, s3_prefix: str
) -> Iterator[Callable[..., ImagegenProcess]]:
    """Starts imagegen processes on the shared bucket prefix, each with its own data dir."""
    with_stack: list[ImagegenProcess] = []

    def start(name: str, **extra: str) -> ImagegenProcess:
        process = imagegen(tmp_path / name, double, **s3_env(seaweedfs, s3_prefix, **extra))
        with_stack.append(process.start())
        return process

    yield start
    for process in reversed(with_stack):
        process.stop()


def generate(process: ImagegenProcess) -> str:
    response = httpx.post(f"{process.base_url}/api/v1/images/generate", json=BODY, timeout=60)
    assert response.status_code == 200, response.text
    (url,) = response.json()["image_urls"]
    assert url.startswith(f"{process.base_url}/images/")
    return str(url).rsplit("/", 1)[1]


def test_an_image_made_by_one_replica_is_served_by_another_byte_for_byte(
    replica: Callable[..., ImagegenProcess], seaweedfs: SeaweedFS, s3_prefix: str, tmp_path: Path
) -> None:
    a, c = replica("a"), replica("c")
    key = generate(a)
    assert not (tmp_path / "a" / "data" / "images").exists(), "nothing is stored on local disk"
    stored = bytes(obstore.get(seaweedfs.obstore(), f"{s3_prefix}/{key}").bytes())
    from_a = httpx.get(f"{a.base_url}/images/{key}")
    from_c = httpx.get(f"{c.base_url}/images/{key}")
    assert from_a.status_code == from_c.status_code == 200
    assert from_a.content == from_c.content == stored
    for name in ("etag", "cache-control", "content-type", "content-length"):
        assert from_a.headers[name] == from_c.headers[name]


def test_images_stream_from_s3_with_the_local_headers(
    replica: Callable[..., ImagegenProcess],
) -> None:
    server = replica("a")
    key = generate(server)
    url = f"{server.base_url}/images/{key}"
    digest, ext = key.split(".")
    with httpx.stream("GET", url) as response:
        assert response.status_code == 200
        assert "transfer-encoding" not in response.headers
        body = b"".join(response.iter_bytes())
    assert response.headers["etag"] == f'"{digest}"'
    assert response.headers["cache-control"] == IMMUTABLE
    assert response.headers["content-type"] == {"png": "image/png", "webp": "image/webp"}.get(
        ext, response.headers["content-type"]
    )
    assert response.headers["content-length"] == str(len(body))
    assert response.headers["x-content-type-options"] == "nosniff"

    head = httpx.head(url)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("etag", "cache-control", "content-type", "content-length"):
        assert head.headers[name] == response.headers[name]

    for method in ("GET", "HEAD"):
        cached = httpx.request(method, url, headers={"If-None-Match": f'"{digest}"'})
        assert cached.status_code == 304
        assert cached.content == b""
        assert cached.headers["etag"] == f'"{digest}"'

    unknown = "0" * 64 + ".png"
    for path in (f"/images/{unknown}", "/images/..%2f..%2fetc%2fpasswd", f"/images/a/{key}"):
        missing = httpx.get(f"{server.base_url}{path}")
        assert missing.status_code == 404, path
        assert missing.json() == {"error": "image not found"}


def test_presigned_redirects_lead_to_the_same_bytes(
    replica: Callable[..., ImagegenProcess],
) -> None:
    a = replica("a")
    b = replica("b", IMAGEGEN_S3_PRESIGNED_REDIRECT="true", IMAGEGEN_S3_PRESIGNED_EXPIRY="60")
    key = generate(a)
    streamed = httpx.get(f"{a.base_url}/images/{key}")
    redirect = httpx.get(f"{b.base_url}/images/{key}")
    assert redirect.status_code == 307
    assert redirect.headers["cache-control"] == "no-store"
    location = redirect.headers["location"]
    assert "X-Amz-Expires=60" in location
    followed = httpx.get(f"{b.base_url}/images/{key}", follow_redirects=True)
    assert followed.status_code == 200
    assert followed.content == streamed.content
    assert followed.headers["content-type"] == streamed.headers["content-type"]
    assert followed.headers["cache-control"] == IMMUTABLE

    head = httpx.head(f"{b.base_url}/images/{key}")
    assert head.status_code == 200, "HEAD is answered by imagegen: a GET URL cannot serve it"
    assert head.headers["etag"] == streamed.headers["etag"]
    conditional = {"If-None-Match": streamed.headers["etag"]}
    assert httpx.get(f"{b.base_url}/images/{key}", headers=conditional).status_code == 304
    assert httpx.get(f"{b.base_url}/images/{'0' * 64}.png").status_code == 404


def wait_for_ready(base_url: str, expected: int, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{base_url}/readyz", timeout=30)
        if response.status_code == expected or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_readyz_fails_while_s3_is_down_and_recovers_with_it(
    tmp_path: Path, double: DoubleProcess
) -> None:
    """Its own SeaweedFS, stopped and started again on the same ports with the same data."""
    with SeaweedFS(tmp_path / "weed") as seaweedfs:
        env = s3_env(seaweedfs, "readyz")
        with imagegen(tmp_path / "imagegen", double, **env) as server:
            up = wait_for_ready(server.base_url, 200)
            assert up.status_code == 200, up.text
            assert up.json()["checks"]["storage"] == "ok"
            key = generate(server)

            seaweedfs.stop()
            seaweedfs.wait_until_down()
            down = wait_for_ready(server.base_url, 503)
            assert down.status_code == 503, down.text
            assert down.json()["checks"]["storage"].startswith("error")
            assert down.json()["checks"]["database"] == "ok"
            unavailable = httpx.get(f"{server.base_url}/images/{key}", timeout=60)
            assert unavailable.status_code == 503, unavailable.text
            assert "S3" in unavailable.json()["error"]
            assert "retry-after" in unavailable.headers
            refused = httpx.post(
                f"{server.base_url}/api/v1/images/generate",
                json={**BODY, "prompt": "while S3 is down"},
                timeout=60,
            )
            assert refused.status_code == 503, refused.text

            seaweedfs.start()
            back = wait_for_ready(server.base_url, 200)
            assert back.status_code == 200, back.text
            assert httpx.get(f"{server.base_url}/images/{key}").status_code == 200
