"""What ``imagegen serve`` loads before it answers: the modules it needs only later (on the first
image, the first webhook, a migration, an ``AsyncEngine``) stay unloaded, so start-up time and
idle memory stay down. Read from the real server's ``-X importtime`` output, as ``bench``
ranks start-up imports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.imagegen_process import ImagegenProcess

# Each is loaded where it is first needed (the comment says where); none is needed to answer.
LATER = {
    "sqlalchemy.orm": "db/mapped.py, a migration",
    "sqlalchemy.ext.asyncio": "PostgreSQL, GenerationStore.engine",
    "aiosqlite": "GenerationStore.engine on SQLite",
    "greenlet": "SQLAlchemy's asyncio layer",
    "sqlalchemy.dialects.postgresql": "PostgreSQL, a migration",
    "PIL": "the first image inspected or mask translated",
    "rich": "the CLI client; httpx's own CLI (imagegen/httpx_cli.py)",
    "pygments": "httpx's CLI, a migration",
    "httpcore": "the first webhook (http_transport.DeferredTransport)",
    "aiohttp": "the first provider request",
    "alembic": "a migration",
    "mako": "a migration",
    "imagegen.shared.events": "IMAGEGEN_REDIS_URL (shared/setup.py)",
    "imagegen.providers.openai_compat": "a catalog's OpenAI-compatible provider (registry.py)",
    "imagegen.key_admin": "the keys commands; serve bound openly with keys (serve_command.py)",
    "typer": "the commands other than serve, and serve's help (command.py)",
    "imagegen.cli": "the commands other than serve, and serve's help (command.py)",
    "torch": "never",
}
# A migration loads these with Alembic; at head, the database opens without it (db/migrate.py).
MIGRATION = {"alembic", "mako", "pygments", "sqlalchemy.orm", "sqlalchemy.dialects.postgresql"}

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.M)


def _served_imports(workdir: Path) -> set[str]:
    """The modules one ``imagegen serve`` on ``workdir`` imported until it answered."""
    server = ImagegenProcess(workdir, {"PYTHONPROFILEIMPORTTIME": "1"})
    with server:
        log = server.log()
    server.log_path.unlink()
    imported = set(_IMPORTED.findall(log))
    assert "imagegen.api.app" in imported, log[-2000:]  # the log is what it seems
    return imported


def _loaded(imported: set[str], names: dict[str, str]) -> list[str]:
    return sorted(
        f"{name} (needed for: {names[name]})"
        for name in names
        if any(module == name or module.startswith(name + ".") for module in imported)
    )


@pytest.mark.timeout(90)
def test_serve_answers_without_loading_what_it_needs_only_later(tmp_path: Path) -> None:
    fresh = _served_imports(tmp_path)  # creates and migrates the database
    existing = _served_imports(tmp_path)  # the usual start: the database is at head

    assert _loaded(fresh, {k: v for k, v in LATER.items() if k not in MIGRATION}) == []
    assert _loaded(existing, LATER) == []


def test_httpx_command_line_client_still_runs_after_imagegen_is_imported() -> None:
    # imagegen leaves httpx's CLI out of ``import httpx`` (imagegen/httpx_cli.py); its stand-in
    # imports the real client when it is called.
    code = "import imagegen, httpx, sys; assert 'rich' not in sys.modules; httpx.main(['--help'])"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "HTTPX" in done.stdout
