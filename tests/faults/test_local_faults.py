"""Local rows of the fault matrix: imagegen's own disk fails, not an upstream.

Over real processes (``imagegen serve`` in front of the Replicate double), each row breaks the
image folder as an operator's machine would, and asserts: a ``503`` with ``Retry-After`` in the
seed's error shape (never a 500, never a 502 that blames the provider), how many predictions
were paid for, ``/readyz`` naming the fault; then, once the fault is gone, that service resumes
and the image stored before it is still served.

As root (CI containers, this machine) the image folder is a small tmpfs, filled up or remounted
read-only. Without root a tmpfs cannot be mounted: the read-only row uses ``chmod`` instead and
the full-disk row is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.fakes.replicate_double import DoubleControl, DoubleProcess
from tests.faults.conftest import TOKEN
from tests.support.imagegen_process import ImagegenProcess

pytestmark = pytest.mark.e2e

FLOOR = 512 * 1024  # IMAGEGEN_MIN_FREE_BYTES of the server under test
TMPFS_BYTES = 4 * 1024 * 1024


class ImageDisk:
    """The server's image folder, on a tmpfs of its own when the test may mount one."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.mounted = False
        if os.geteuid() == 0:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(folder)],
                capture_output=True,
                text=True,
                check=False,
            )
            self.mounted = result.returncode == 0
            self.mount_error = result.stderr.strip()
        self.filler = folder / "filler"

    def fill(self, leave: int) -> None:
        """Use the disk up, leaving ``leave`` bytes free."""
        free = os.statvfs(self.folder).f_bavail * os.statvfs(self.folder).f_frsize
        with self.filler.open("ab") as file:
            file.write(b"\0" * max(0, free - leave))

    def unfill(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self, on: bool) -> None:
        if self.mounted:
            mode = "ro" if on else "rw"
            subprocess.run(["mount", "-o", f"remount,{mode}", str(self.folder)], check=True)
        else:
            for path in (self.folder, *(p for p in self.folder.rglob("*") if p.is_dir())):
                path.chmod(0o555 if on else 0o755)

    def close(self) -> None:
        if self.mounted:
            with contextlib.suppress(subprocess.CalledProcessError):
                self.read_only(False)
            subprocess.run(["umount", "-l", str(self.folder)], check=False)


@pytest.fixture(scope="module")
def local_server(
    tmp_path_factory: pytest.TempPathFactory, fault_double: DoubleProcess
) -> Iterator[tuple[ImagegenProcess, ImageDisk]]:
    tmp = tmp_path_factory.mktemp("imagegen-local-faults")
    disk = ImageDisk(tmp / "data" / "images")
    server = ImagegenProcess(
        tmp,
        {
            "REPLICATE_API_KEY": TOKEN,
            "REPLICATE_BASE_URL": fault_double.base_url,
            "IMAGEGEN_REQUEST_TIMEOUT": "10",
            "IMAGEGEN_REPLICATE_WAIT": "1",
            "IMAGEGEN_POLL_INTERVAL": "0.05",
            "IMAGEGEN_MIN_FREE_BYTES": str(FLOOR),
        },
    )
    try:
        server.start()
        yield server, disk
    finally:
        server.stop()
        disk.close()


@pytest.fixture
def upstream(fault_double: DoubleProcess) -> Iterator[DoubleControl]:
    assert fault_double.control is not None
    fault_double.control.reset()
    yield fault_double.control
    fault_double.control.reset()


def _generate(
    server: ImagegenProcess, prompt: str, width: int = 512, height: int = 512
) -> httpx.Response:
    body = {
        "model": "black-forest-labs/flux-schnell",
        "prompt": prompt,
        "num_images": 1,
        "width": width,
        "height": height,
    }
    return httpx.post(f"{server.base_url}/api/v1/images/generate", json=body, timeout=30)


def _assert_local_503(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert set(response.json()) == {"error"}
    for word in words:
        assert word in response.json()["error"], response.json()["error"]


def _readyz(server: ImagegenProcess) -> httpx.Response:
    return httpx.get(f"{server.base_url}/readyz", timeout=10)


def _resumes(server: ImagegenProcess, before: httpx.Response, prompt: str) -> None:
    assert _readyz(server).status_code == 200, _readyz(server).text
    after = _generate(server, prompt)
    assert after.status_code == 200, after.text
    kept = httpx.get(before.json()["image_urls"][0], timeout=10)
    assert kept.status_code == 200


def test_disk_below_its_floor_refuses_creates_before_paying(local_server, upstream):
    server, disk = local_server
    if not disk.mounted:
        pytest.skip(f"filling a disk needs a tmpfs of its own, which needs root: {disk.folder}")
    before = _generate(server, "local fault: before a full disk")
    assert before.status_code == 200, before.text
    creates = upstream.stats()["creates"]["total"]
    disk.fill(leave=FLOOR // 4)
    try:
        _assert_local_503(_generate(server, "local fault: full disk"), "IMAGEGEN_MIN_FREE_BYTES")
        assert upstream.stats()["creates"]["total"] == creates  # nothing paid for
        ready = _readyz(server)
        assert ready.status_code == 503
        assert "IMAGEGEN_MIN_FREE_BYTES" in ready.json()["checks"]["disk"]
    finally:
        disk.unfill()
    _resumes(server, before, "local fault: after a full disk")


def test_read_only_image_folder_is_503_not_a_provider_error(local_server, upstream):
    server, disk = local_server
    if os.geteuid() == 0 and not disk.mounted:
        pytest.skip(f"root ignores chmod and the tmpfs mount failed: {disk.mount_error}")
    before = _generate(server, "local fault: before a read-only folder")
    assert before.status_code == 200, before.text
    creates = upstream.stats()["creates"]["total"]
    disk.read_only(True)
    try:
        # Images are stored by content, and one already on disk is not written again: the double
        # paints each image in one of eight colours, so at 512x512 it could hand back an image
        # stored earlier in this module. A shape no other row asks for makes this one new.
        response = _generate(server, "local fault: read-only folder", width=768, height=512)
        _assert_local_503(response, "image folder")
        assert "502" not in response.text
        assert upstream.stats()["creates"]["total"] == creates + 1  # the prediction ran
        ready = _readyz(server)
        assert ready.status_code == 503
        assert ready.json()["checks"]["storage"].startswith("error: image directory")
    finally:
        disk.read_only(False)
    _resumes(server, before, "local fault: after a read-only folder")
