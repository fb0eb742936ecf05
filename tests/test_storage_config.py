"""IMAGEGEN_STORAGE_URL and the S3 settings: parsing, the default, and start-up refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from imagegen.config import Settings
from imagegen.errors import ConfigurationError
from imagegen.storage.factory import INSTALL_HINT, require_backend
from imagegen.storage.location import LocalLocation, S3Location, parse_storage_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://images", S3Location("images", "")),
        ("s3://my.images-1/a/b/", S3Location("my.images-1", "a/b")),
        ("s3://images//deep//prefix", S3Location("images", "deep/prefix")),
        ("file:///srv/imagegen/images", LocalLocation(Path("/srv/imagegen/images"))),
        ("/srv/images", LocalLocation(Path("/srv/images"))),
        ("relative/images", LocalLocation(Path("relative/images"))),
        ("./odd:name", LocalLocation(Path("odd:name"))),
    ],
)
def test_storage_urls(url: str, expected: object) -> None:
    assert parse_storage_url(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("s3://", "not a valid S3 bucket name"),
        ("s3://Images/x", "not a valid S3 bucket name"),
        ("s3://ab", "not a valid S3 bucket name"),
        ("s3://images/a/../b", "must not contain"),
        ("s3://images/p?versionId=1", "no query"),
        ("s3://key:secret@images/p", "AWS_"),
        ("gs://images/p", "unsupported scheme 'gs:'"),
        ("s3:/images", "two slashes"),
        ("s3:images", "two slashes"),
        ("https://example.com/images", "unsupported scheme"),
        ("file://", "needs a path"),
    ],
)
def test_bad_storage_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_storage_url(url)
    with pytest.raises(ValidationError, match="storage_url"):
        Settings(storage_url=url)


def test_the_default_is_the_data_directory(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.storage_location == LocalLocation(tmp_path / "images")
    assert Settings(data_dir=tmp_path, storage_url=" ").storage_location == LocalLocation(
        tmp_path / "images"
    )


def test_s3_settings_are_bounded() -> None:
    with pytest.raises(ValidationError, match="s3_presigned_expiry"):
        Settings(s3_presigned_expiry=604801)
    with pytest.raises(ValidationError, match="s3_endpoint_url"):
        Settings(s3_endpoint_url="localhost:8333")


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGEN_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-m", "imagegen", "serve"],
        cwd=tmp_path,
        env={**clean, "IMAGEGEN_DATA_DIR": str(tmp_path / "data"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_storage_url_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = serve(tmp_path, IMAGEGEN_STORAGE_URL="s3:/images")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("imagegen: invalid setting IMAGEGEN_STORAGE_URL:")


def test_a_missing_s3_client_stops_start_up_with_the_install_command(tmp_path: Path) -> None:
    """``obstore`` made unimportable (as without the extra): one line, the pip command."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "obstore.py").write_text("raise ImportError('no obstore', name='obstore')\n")
    result = serve(
        tmp_path,
        IMAGEGEN_STORAGE_URL="s3://images/prefix",
        PYTHONPATH=os.pathsep.join([str(blocker), *sys.path]),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "IMAGEGEN_STORAGE_URL" in lines[0]
    assert INSTALL_HINT in lines[0]


def test_local_storage_never_imports_the_s3_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "obstore", None)  # any import of it would fail
    monkeypatch.delitem(sys.modules, "imagegen.storage.s3", raising=False)
    require_backend(Settings())
    with pytest.raises(ConfigurationError, match="imagegen\\[s3\\]"):
        require_backend(Settings(storage_url="s3://images"))
