"""The OpenAI-compatible API over real processes: ``imagegen serve`` with a catalog file, the
Replicate double and the OpenAI double, driven by the official ``openai`` SDK."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image
from tests.e2e.conftest import imagegen
from tests.fakes.images import make_image
from tests.fakes.replicate_double import DoubleProcess
from tests.support.imagegen_process import ImagegenProcess

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
OPENAI_KEY = "sk-e2e-0123456789"

CATALOG = """
[providers.openai]
kind = "openai"
base_url = "{openai}"
api_key_env = "E2E_OPENAI_KEY"

[[models]]
name = "dall-e-3"
provider = "openai"
upstream = "dall-e-3"

[[models]]
name = "gpt-image-1"
provider = "openai"
upstream = "gpt-image-1"

[[models]]
name = "flux"
provider = "replicate"
upstream = "black-forest-labs/flux-schnell"
defaults = {{ width = 512, height = 512 }}
"""


class OpenAIDoubleProcess:
    """``python -m tests.fakes.openai_double`` as a child process."""

    def __init__(self) -> None:
        command = [sys.executable, "-m", "tests.fakes.openai_double", "--port", "0"]
        self._proc = subprocess.Popen(
            [*command, "--api-key", OPENAI_KEY], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError("the OpenAI double process did not print READY")
        self.base_url = line.split()[1]

    def stats(self) -> dict[str, object]:
        result: dict[str, object] = httpx.get(f"{self.base_url}/_double/stats").json()
        return result

    def reset(self) -> None:
        httpx.post(f"{self.base_url}/_double/reset").raise_for_status()

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


@pytest.fixture(scope="module")
def openai_process() -> Iterator[OpenAIDoubleProcess]:
    process = OpenAIDoubleProcess()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    double: DoubleProcess,
    openai_process: OpenAIDoubleProcess,
) -> Iterator[ImagegenProcess]:
    workdir = tmp_path_factory.mktemp("imagegen-openai")
    (workdir / "catalog.toml").write_text(CATALOG.format(openai=openai_process.base_url))
    env = {"IMAGEGEN_CATALOG": "catalog.toml", "E2E_OPENAI_KEY": OPENAI_KEY}
    with imagegen(workdir, double, **env) as process:
        yield process


@pytest.fixture
def sdk(server: ImagegenProcess, openai_process: OpenAIDoubleProcess, control) -> openai.OpenAI:
    openai_process.reset()
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


def test_url_and_b64_json_through_both_upstreams(sdk: openai.OpenAI, server, control) -> None:
    by_url = sdk.images.generate(model="dall-e-3", prompt="an otter", response_format="url")
    assert by_url.data is not None
    url = by_url.data[0].url
    assert url is not None
    assert url.startswith(f"{server.base_url}/images/")
    assert Image.open(io.BytesIO(httpx.get(url).content)).size == (1024, 1024)

    inline = sdk.images.generate(model="flux", prompt="a city", n=2, response_format="b64_json")
    assert inline.data is not None
    sizes = [Image.open(io.BytesIO(base64.b64decode(d.b64_json or ""))).size for d in inline.data]
    assert sizes == [(512, 512), (512, 512)]
    assert control.stats()["creates"]["total"] == 1


def test_an_edit_reaches_an_openai_compatible_upstream_as_its_multipart_edit(
    sdk: openai.OpenAI, openai_process: OpenAIDoubleProcess, server
) -> None:
    photo = make_image(512, 512, "png", (40, 40, 200))
    mask = make_image(512, 512, "png", (255, 255, 255))
    result = sdk.images.edit(
        model="gpt-image-1",
        image=[("a.png", photo, "image/png"), ("b.png", make_image(64, 32), "image/png")],
        mask=("mask.png", mask, "image/png"),
        prompt="a yellow boat",
    )
    assert result.data is not None
    url = result.data[0].url
    assert url is not None
    assert url.startswith(f"{server.base_url}/images/")
    (sent,) = openai_process.stats()["requests"]  # type: ignore[misc]
    assert sent["endpoint"] == "edits"
    assert sent["image_sizes"] == [[512, 512], [64, 32]]
    assert sent["mask_size"] == [512, 512]
    assert sent["size"] == "1024x1024"  # the model's nearest size to the image's own


def test_typed_errors_and_request_ids(sdk: openai.OpenAI, control) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.images.generate(model="dall-e-9", prompt="an otter")
    assert missing.value.request_id is not None
    with pytest.raises(openai.UnprocessableEntityError):
        sdk.images.generate(model="ibm-granite/granite-3.0-8b-instruct", prompt="a poem")
    assert {model.id for model in sdk.models.list()} >= {"dall-e-3", "flux"}


def test_a_repeated_idempotency_key_makes_one_upstream_call(
    sdk: openai.OpenAI, openai_process: OpenAIDoubleProcess
) -> None:
    headers = {"Idempotency-Key": "e2e-once"}
    first = sdk.images.generate(model="dall-e-3", prompt="a fox", extra_headers=headers)
    again = sdk.images.generate(model="dall-e-3", prompt="a fox", extra_headers=headers)
    assert first.id == again.id  # type: ignore[attr-defined]
    assert openai_process.stats()["total_calls"] == 1


def test_a_bad_catalog_stops_start_up_naming_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "catalog.toml").write_text('[providers.x]\nkind = "dalle"\n')
    result = subprocess.run(
        [sys.executable, "-m", "imagegen", "serve"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "IMAGEGEN_CATALOG": "catalog.toml"},
    )
    assert result.returncode == 2
    assert "catalog file catalog.toml is invalid" in result.stderr
    assert "providers.x.kind: unknown kind 'dalle'" in result.stderr
