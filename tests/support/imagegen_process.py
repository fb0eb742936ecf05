"""``imagegen serve`` as a real child process, for end-to-end tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx
from tests.support.lifecycle import Started

# Variables a developer's shell may hold that would leak into the server under test.
_SCRUB_PREFIXES = ("IMAGEGEN_", "REPLICATE_", "OPENAI_", "AWS_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ImagegenProcess(Started):
    """Runs ``python -m imagegen serve`` in ``workdir`` (no stray ``.env``) with ``env`` only."""

    def __init__(self, workdir: Path, env: dict[str, str], *, startup_timeout: float = 30.0):
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._env = env
        self._timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"imagegen-{self.port}.log"

    def start(self) -> Self:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
        env.update(
            {
                "IMAGEGEN_DATA_DIR": str(self.workdir / "data"),
                "IMAGEGEN_PORT": str(self.port),
                "IMAGEGEN_LOG_LEVEL": "warning",
                **self._env,
            }
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "imagegen", "serve"],
            cwd=self.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"imagegen exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"imagegen did not answer within {self._timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()

    def pause(self) -> None:
        """``SIGSTOP``: the whole process stalls (as in a long GC pause) until ``resume``."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
