"""Where images are stored, from ``IMAGEGEN_STORAGE_URL``: a local directory or an S3 bucket.

(unset)                  local disk, ``<data dir>/images``
/srv/images, ./images    local disk at that path
file:///srv/images       the same, as a URL
s3://bucket/some/prefix  an S3 bucket (any S3-compatible service), keys under the prefix
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

# S3's bucket naming rules: 3-63 of lowercase letters, digits, dots and hyphens, starting and
# ending with a letter or digit.
# A URL scheme (two letters or more, so a Windows drive letter is still a path) and its colon.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class LocalLocation:
    """Images on local disk under ``path``."""

    path: Path


@dataclass(frozen=True, slots=True)
class S3Location:
    """Images in ``bucket``, each under ``<prefix>/<key>`` (``prefix`` may be empty)."""

    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


StorageLocation = LocalLocation | S3Location


def parse_storage_url(url: str) -> StorageLocation:
    """Parse ``IMAGEGEN_STORAGE_URL``; ``ValueError`` says what is wrong with it."""
    url = url.strip()
    if not url:
        raise ValueError("must not be empty")
    scheme = _SCHEME.match(url)
    if scheme is None:
        return LocalLocation(Path(url))
    name = scheme.group(1).lower()
    if name not in ("s3", "file"):
        raise ValueError(
            f"unsupported scheme {name + ':'!r}: use s3://bucket/prefix, file:///path or a "
            "directory path (./name for a directory whose name has a colon)"
        )
    if not url[scheme.end() :].startswith("//"):
        raise ValueError(f"write {name}://... (two slashes after {name + ':'!r})")
    if name == "s3":
        return _s3(url)
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    if not path:
        raise ValueError("a file:// URL needs a path, e.g. file:///srv/imagegen/images")
    return LocalLocation(Path(path))


def _s3(url: str) -> S3Location:
    parts = urllib.parse.urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError("an s3:// URL takes no query or fragment: s3://bucket/prefix")
    if parts.username or parts.password or parts.port:
        raise ValueError("credentials come from AWS_* variables, not from the s3:// URL")
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(
            f"{bucket!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, "
            "dots, hyphens): use s3://bucket/prefix"
        )
    segments = [segment for segment in parts.path.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise ValueError("the prefix of an s3:// URL must not contain . or .. segments")
    return S3Location(bucket=bucket, prefix="/".join(segments))
