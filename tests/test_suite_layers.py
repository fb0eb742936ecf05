"""The suite's own guarantees: every test has a timeout, and the layers `make test-fast` leaves
out are marked by folder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]


def test_a_hanging_test_fails_on_its_timeout(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_hang=textwrap.dedent(
            """
            import time
            import pytest

            @pytest.mark.timeout(1)
            def test_hangs():
                time.sleep(60)
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "timeout")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Timeout*"])


def test_the_suite_has_a_default_timeout_per_test(pytestconfig: pytest.Config) -> None:
    assert float(pytestconfig.getini("timeout")) == 120


def collected(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_make_test_fast_leaves_out_the_e2e_faults_and_fuzz_folders() -> None:
    fast = collected("-m", "not e2e and not faults and not fuzz")
    assert not [test for test in fast if test.split("/")[1] in ("e2e", "faults", "fuzz")]
    assert len(fast) > 500
