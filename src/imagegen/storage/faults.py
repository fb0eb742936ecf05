"""Local disk faults, recognised by ``errno`` (never by message): a full disk or quota, a
read-only filesystem, a folder imagegen may not write, failing I/O. Each becomes a
``StorageUnavailable`` (503 with ``Retry-After``) naming the folder, rather than an unexplained
500 or a 502 that blames the provider whose image could not be kept."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from imagegen.errors import StorageUnavailable

LOCAL_FAULTS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
)
DiskUsage = Callable[[Path], int]
"""Free bytes on the filesystem holding a path (injected in tests)."""


def storage_fault(exc: OSError, folder: Path) -> StorageUnavailable | None:
    """The ``StorageUnavailable`` that ``exc`` amounts to, or None for other errors."""
    if exc.errno not in LOCAL_FAULTS:
        return None
    reason = os.strerror(exc.errno) if exc.errno is not None else str(exc)
    return StorageUnavailable(f"imagegen cannot write its image folder {str(folder)!r}: {reason}")


def free_bytes(path: Path) -> int:
    """Free bytes (for an unprivileged user) on the filesystem that holds ``path``, or would."""
    try:  # one statvfs when the folder exists, as it does once anything is stored
        return _free(path)
    except FileNotFoundError:
        pass
    for candidate in path.resolve().parents:
        if candidate.exists():
            return _free(candidate)
    return _free(Path.cwd())


def _free(path: Path) -> int:
    """``shutil.disk_usage(path).free``, without working out the rest."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_free_space(path: Path, floor: int, usage: DiskUsage = free_bytes) -> None:
    """Raise ``StorageUnavailable`` when ``path``'s filesystem has under ``floor`` bytes free."""
    if floor <= 0:
        return
    free = usage(path)
    if free < floor:
        raise StorageUnavailable(
            f"imagegen's disk is nearly full: {free} bytes free at {str(path)!r}, below "
            f"IMAGEGEN_MIN_FREE_BYTES ({floor})"
        )
