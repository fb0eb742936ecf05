"""What is particular to S3ImageStore, on a real S3 (SeaweedFS): object layout and metadata,
streamed uploads, presigned URLs, readiness, configuration from the AWS_* variables."""

from __future__ import annotations

import hashlib
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import obstore
import pytest
from tests.support.seaweedfs import ACCESS_KEY, REGION, SeaweedFS

from imagegen.errors import ConfigurationError, NotFound
from imagegen.storage import ImageStore, RedirectingStore, make_key
from imagegen.storage.location import S3Location
from imagegen.storage.s3 import S3ImageStore
from imagegen.storage.s3_config import S3Config

DATA = b"\x89PNG s3 test bytes"
KEY = make_key(hashlib.sha256(DATA).hexdigest(), "png")


def config(seaweedfs: SeaweedFS, prefix: str, **options: Any) -> S3Config:
    location = S3Location(bucket=seaweedfs.bucket, prefix=prefix)
    return S3Config.from_environment(
        location, seaweedfs.env, endpoint_url=seaweedfs.endpoint_url, **options
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def store(
    seaweedfs: SeaweedFS, s3_prefix: str, http: httpx.AsyncClient, tmp_path: Path
) -> S3ImageStore:
    return S3ImageStore(config(seaweedfs, s3_prefix), http=http, staging_dir=tmp_path)


def spool(store: S3ImageStore, data: bytes) -> Path:
    path = store.staging_dir / "download.part"
    path.write_bytes(data)
    return path


async def test_objects_are_flat_under_the_prefix_with_their_headers(
    store: S3ImageStore, seaweedfs: SeaweedFS, s3_prefix: str
) -> None:
    await store.put(KEY, DATA, "image/png")
    other = bytes(range(256)) * 64
    other_key = make_key(hashlib.sha256(other).hexdigest(), "gif")
    await store.put(other_key, spool(store, other), "image/gif")
    raw = seaweedfs.obstore()
    for key, data, content_type in ((KEY, DATA, "image/png"), (other_key, other, "image/gif")):
        result = await obstore.get_async(raw, f"{s3_prefix}/{key}")
        assert bytes(await result.bytes_async()) == data
        assert result.attributes["Content-Type"] == content_type
        assert result.attributes["Cache-Control"] == "public, max-age=31536000, immutable"


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


async def test_a_spooled_image_is_uploaded_in_small_pieces(store: S3ImageStore) -> None:
    """A 32 MB image goes up as a stream: neither Python nor the native client holds it whole.
    (The peak resident size is reset first, so it counts this upload only.)"""
    size = 32 * 1024 * 1024
    key = make_key(hashlib.sha256(b"\0" * size).hexdigest(), "webp")
    path = store.staging_dir / "download.part"
    with path.open("wb") as file:
        file.truncate(size)  # sparse: writing it costs no memory either
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    tracemalloc.start()
    try:
        assert await store.put(key, path, "image/webp") is True
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown_kib = _status_kib("VmHWM") - before
    assert python_peak < 4 * 1024 * 1024, f"Python peak {python_peak} bytes for 32 MB"
    assert grown_kib < 12 * 1024, f"resident size grew {grown_kib} KiB for a 32 MB upload"
    assert not path.exists()
    assert (await store.stat(key)).size_bytes == size


async def test_presigned_urls_serve_the_bytes_and_expire(
    seaweedfs: SeaweedFS, s3_prefix: str, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    redirecting = S3ImageStore(
        config(seaweedfs, s3_prefix, presigned_redirect=True, presigned_expiry=120),
        http=http,
        staging_dir=tmp_path,
    )
    assert isinstance(redirecting, RedirectingStore)
    await redirecting.put(KEY, DATA, "image/png")
    url = await redirecting.redirect_url(KEY)
    assert url is not None
    params = httpx.URL(url).params
    assert params["X-Amz-Expires"] == "120"
    response = await http.get(url)
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-type"] == "image/png"
    tampered = url.replace(f"{KEY}?", f"{make_key('0' * 64, 'png')}?")
    assert (await http.get(tampered)).status_code == 403, "the signature covers the key"


async def test_redirects_are_off_unless_configured(store: S3ImageStore) -> None:
    await store.put(KEY, DATA, "image/png")
    assert await store.redirect_url(KEY) is None


async def test_missing_objects_are_not_found(store: S3ImageStore) -> None:
    with pytest.raises(NotFound):
        await store.stat(KEY)
    with pytest.raises(NotFound):
        await anext(store.iter_bytes(KEY))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_check_fails_fast_when_s3_is_unreachable(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    unreachable = S3Config(
        location=S3Location(bucket="imagegen", prefix=""),
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        access_key_id=ACCESS_KEY,
        secret_access_key="x",
    )
    store: ImageStore = S3ImageStore(unreachable, http=http, staging_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=r"s3://imagegen at http://127\.0\.0\.1"):
        await store.check()
    assert time.monotonic() - started < 10


async def test_check_fails_with_wrong_credentials(
    seaweedfs: SeaweedFS, s3_prefix: str, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    env = {**seaweedfs.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    wrong = S3Config.from_environment(
        S3Location(bucket=seaweedfs.bucket, prefix=s3_prefix),
        env,
        endpoint_url=seaweedfs.endpoint_url,
    )
    with pytest.raises(ConfigurationError, match="not usable"):
        await S3ImageStore(wrong, http=http, staging_dir=tmp_path).check()


async def test_a_refused_upload_is_an_oserror_and_leaves_nothing(
    seaweedfs: SeaweedFS, s3_prefix: str, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    env = {**seaweedfs.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    location = S3Location(bucket=seaweedfs.bucket, prefix=s3_prefix)
    wrong = S3Config.from_environment(location, env, endpoint_url=seaweedfs.endpoint_url)
    store = S3ImageStore(wrong, http=http, staging_dir=tmp_path)
    path = spool(store, DATA)
    with pytest.raises(OSError, match="S3"):
        await store.put(KEY, path, "image/png")
    assert not path.exists()
    with pytest.raises(FileNotFoundError):
        await obstore.head_async(seaweedfs.obstore(), f"{s3_prefix}/{KEY}")


def test_region_and_credentials_come_from_the_aws_variables() -> None:
    location = S3Location(bucket="images", prefix="p")
    env = {
        "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "very-secret",
        "AWS_SESSION_TOKEN": "session-secret",
    }
    built = S3Config.from_environment(location, env)
    assert (built.region, built.access_key_id) == ("eu-west-3", "AKIAEXAMPLE")
    assert (built.secret_access_key, built.session_token) == ("very-secret", "session-secret")
    assert "secret" not in repr(built)
    regional = S3Config.from_environment(location, {**env, "AWS_REGION": "ap-south-1"})
    assert regional.region == "ap-south-1"
    assert S3Config.from_environment(location, {}).region == REGION


async def test_aws_urls_are_virtual_hosted_and_carry_the_session_token(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "the-session-token",
        "AWS_REGION": "eu-central-1",
    }
    temporary = S3Config.from_environment(
        S3Location(bucket="images", prefix="p"), env, presigned_redirect=True
    )
    url = await S3ImageStore(temporary, http=http, staging_dir=tmp_path).redirect_url(KEY)
    assert url is not None
    assert url.startswith(f"https://images.s3.eu-central-1.amazonaws.com/p/{KEY}?")
    params = httpx.URL(url).params
    assert params["X-Amz-Security-Token"] == "the-session-token"
    assert params["X-Amz-Credential"].startswith("ASIAEXAMPLE/")
    assert params["X-Amz-Expires"] == "300"

    dotted = S3Config.from_environment(S3Location("my.images", ""), env, presigned_redirect=True)
    url = await S3ImageStore(dotted, http=http, staging_dir=tmp_path).redirect_url(KEY)
    assert url is not None
    assert url.startswith(f"https://s3.eu-central-1.amazonaws.com/my.images/{KEY}?")
