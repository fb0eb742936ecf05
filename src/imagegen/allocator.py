"""glibc's ``malloc``, set for a server holding thousands of requests at once.

By default glibc gives each thread that allocates an arena of its own (up to eight per core)
and raises its ``mmap`` threshold after a large block is freed, so that the next large blocks
(an image being decoded, a response body) come from an arena too. Memory freed in an arena
seldom goes back to the system: a process holding many requests in flight, with a few threads
(DNS lookups, file writes) allocating beside the event loop, keeps a high RSS. Two arenas and a
fixed 128 KiB threshold (above it a block is mapped, and unmapped when freed) took about a
quarter off the memory per in-flight generation (``python -m bench --only in-flight-workers``),
for a few ``mmap`` calls per image.

Each variable glibc reads (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``) that the environment sets wins over what is set here. Elsewhere than
glibc (macOS, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2
MMAP_THRESHOLD = 128 * 1024

#: (the variable that overrides it, mallopt's option, the value set here)
SETTINGS = (
    ("MALLOC_ARENA_MAX", M_ARENA_MAX, ARENAS),
    ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    ("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, MMAP_THRESHOLD),
)

Mallopt = Callable[[int, int], int]


def glibc_mallopt() -> Mallopt | None:
    """glibc's ``mallopt``, or None where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: its C library, found at no cost
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl has a mallopt that does nothing)
    except (OSError, AttributeError):
        return None
    mallopt: Mallopt = libc.mallopt
    return mallopt


def tune_allocator(
    environ: Mapping[str, str] | None = None, mallopt: Mallopt | None = None
) -> list[str]:
    """Set ``SETTINGS`` the environment leaves unset, before the process starts threads; the
    variables whose setting was applied."""
    environ = os.environ if environ is None else environ
    mallopt = mallopt or glibc_mallopt()
    if mallopt is None:
        return []
    return [
        variable
        for variable, option, value in SETTINGS
        if variable not in environ and mallopt(option, value) == 1
    ]
