"""What the ``imagegen`` command loads: each command imports what it needs when it runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_importing_the_cli_loads_neither_server_nor_client() -> None:
    result = run_python(
        """
        import sys
        import imagegen.cli
        heavy = ["imagegen.config", "fastapi", "uvicorn", "httpx", "rich", "sqlalchemy"]
        print([name for name in heavy if name in sys.modules])
        """
    )
    assert result.stdout.strip() == "[]", result.stderr
