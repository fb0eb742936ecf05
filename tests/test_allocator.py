"""glibc's allocator is set for many requests in flight, unless the environment says otherwise."""

from __future__ import annotations

import sys

import pytest

from imagegen.allocator import (
    ARENAS,
    M_ARENA_MAX,
    M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD,
    MMAP_THRESHOLD,
    glibc_mallopt,
    tune_allocator,
)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return 1


def test_two_arenas_and_a_fixed_mmap_threshold() -> None:
    mallopt = Recorder()
    applied = tune_allocator({}, mallopt)
    assert mallopt.calls == [
        (M_ARENA_MAX, ARENAS),
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (M_TRIM_THRESHOLD, MMAP_THRESHOLD),
    ]
    assert applied == ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]


def test_what_the_environment_sets_is_left_to_glibc() -> None:
    mallopt = Recorder()
    applied = tune_allocator({"MALLOC_ARENA_MAX": "8"}, mallopt)
    assert (M_ARENA_MAX, ARENAS) not in mallopt.calls
    assert applied == ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]


def test_a_refused_setting_is_not_reported_applied() -> None:
    assert tune_allocator({}, lambda option, value: 0) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_glibc_takes_the_settings() -> None:
    mallopt = glibc_mallopt()
    if mallopt is None:
        pytest.skip("not glibc")
    assert mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
