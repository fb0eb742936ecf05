"""Running the double: in a background thread (``ReplicateDouble``), as a child process
(``DoubleProcess``), or from the command line (``main``); ``DoubleControl`` steers it over HTTP.

All three expose the same controls: ``script``, ``configure``, ``reset``, ``expire``, ``stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import httpx
import uvicorn
from tests.fakes.replicate.app import create_double_app
from tests.fakes.replicate.config import DoubleConfig
from tests.fakes.replicate.control import queue_faults
from tests.fakes.replicate.state import DoubleState
from tests.support.lifecycle import Started
from tests.support.threaded_server import ThreadedServer, bind_loopback

REPO_ROOT = Path(__file__).resolve().parents[3]


def _server(state: DoubleState, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(
        create_double_app(state=state),
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


def _fault_payload(fault: str | None, fields: dict[str, Any]) -> dict[str, Any]:
    return {"fault": fault, **fields} if fault is not None else fields


class ReplicateDouble(Started):
    """The double served by uvicorn on ``127.0.0.1:<free port>`` from a daemon thread.

    ``with ReplicateDouble(DoubleConfig(duration=0.1)) as double: double.base_url``. Pass
    ``clock=`` (seconds, like ``time.time``) to drive prediction lifecycles, deadlines, file
    expiry and rate limits by hand; sync-mode holds still wait in real time.
    """

    def __init__(
        self,
        config: DoubleConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = DoubleState(config, clock=clock)
        self._host, self._port, self._log_level = host, port, log_level
        self._runner: ThreadedServer | None = None
        self.base_url = ""

    @property
    def config(self) -> DoubleConfig:
        return self.state.config

    def start(self) -> Self:
        sock = bind_loopback(self._host, self._port)
        self.base_url = f"http://{self._host}:{sock.getsockname()[1]}"
        self._runner = ThreadedServer(
            _server(self.state, self._log_level), name="the Replicate double"
        )
        self._runner.start(sock)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop(timeout=5)
        self._runner = None

    # -- controls (the same as over HTTP) ---------------------------------------------------------

    def script(self, fault: str | None = None, **fields: Any) -> None:
        """Queue one fault: ``script("fail_prediction", error="boom")``,
        ``script(route="get", status=503, times=3)``."""
        queue_faults(self.state, _fault_payload(fault, fields))

    def configure(self, **patch: Any) -> DoubleConfig:
        return self.state.update_config(patch)

    def reset(self) -> None:
        self.state.reset()

    def expire(self) -> int:
        return self.state.expire_all()

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def client(self, **kwargs: Any) -> Any:
        """A ``replicate.Client`` pointed here, polling every 10 ms."""
        import replicate

        client = replicate.Client(api_token=self.config.token, base_url=self.base_url, **kwargs)
        client.poll_interval = 0.01
        return client


class DoubleControl:
    """Steers a double (thread or process) through ``/_double/*``."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=timeout)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    def script(self, fault: str | None = None, **fields: Any) -> None:
        self._call("POST", "/_double/script", _fault_payload(fault, fields))

    def script_many(self, faults: list[dict[str, Any]]) -> None:
        self._call("POST", "/_double/script", {"faults": faults})

    def configure(self, **patch: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/_double/config", patch)
        return result

    def reset(self) -> None:
        self._call("POST", "/_double/reset")

    def expire(self) -> int:
        return int(self._call("POST", "/_double/expire")["expired_files"])

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_double/stats")
        return result

    def close(self) -> None:
        self._http.close()


class DoubleProcess(Started):
    """``python -m tests.fakes.replicate_double --port 0 <args>`` as a child process."""

    def __init__(self, *args: str, startup_timeout: float = 20.0) -> None:
        self._args = args
        self._timeout = startup_timeout
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.control: DoubleControl | None = None

    def start(self) -> Self:
        command = [sys.executable, "-m", "tests.fakes.replicate_double", "--port", "0"]
        self._proc = subprocess.Popen(
            [*command, *self._args], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline and self._proc.poll() is None:
            ready, _, _ = select.select([self._proc.stdout], [], [], 0.1)
            line = self._proc.stdout.readline() if ready else ""
            if line.startswith("READY "):
                self.base_url = line.split()[1]
                self.control = DoubleControl(self.base_url)
                return self
        self.stop()
        raise RuntimeError("the Replicate double process did not print READY")

    def stop(self) -> None:
        if self.control is not None:
            self.control.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None


_CLI_FIELDS = {
    "token": str,
    "duration": float,
    "queue_time": float,
    "create_rate": float,
    "create_burst": int,
    "get_rate": float,
    "get_burst": int,
    "other_rate": float,
    "other_burst": int,
    "file_ttl": float,
    "output_mode": str,
    "sync_done_status": str,
    "sync_timeout_status": str,
    "max_wait": float,
    "cancel_after_scale": float,
    "min_cancel_after": float,
    "public_base_url": str,
    "file_base_url": str,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.replicate_double",
        description="A Replicate API test double on loopback; prints 'READY <base_url>'.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--low-credit", action="store_true", default=None)
    for name, kind in _CLI_FIELDS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    fields = {k: getattr(args, k) for k in [*_CLI_FIELDS, "low_credit"]}
    config = DoubleConfig(**{k: v for k, v in fields.items() if v is not None})
    sock = bind_loopback(args.host, args.port)
    server = _server(DoubleState(config), args.log_level)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"READY http://{args.host}:{sock.getsockname()[1]}", flush=True)
        await task

    asyncio.run(serve())
