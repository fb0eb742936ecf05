"""Instructions per generation: the work imagegen's process does for one generation, counted by
callgrind, which unlike a timing does not move with the machine's other load.
``python -m bench.instructions [--mode passthrough|stored] [--route seed|openai] [--generations N]
[--src DIR]``.

One ``imagegen serve`` runs under ``valgrind --tool=callgrind`` with counting off, in front of
the Replicate double (answering at once). After ``--warm`` generations at one connection,
counting is switched on (``callgrind_control``), ``--generations`` more are made one after the
other on the seed endpoint (``--route openai``: on ``POST /v1/images/generations``, the same
model and size), and the count is dumped: every instruction the process ran in user
space, all its threads (the event loop, the database's writer), over the generations made. The
kernel's work (sockets, the WAL's writes) is not counted. Two runs of the same code agree to
about 0.2 %; compare two versions by running each (``--src`` serves another checkout's
``src``, through ``PYTHONPATH``). Not part of ``python -m bench``: it needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from tests.support.imagegen_process import free_port

from bench.common import BODY, INSTANT, Generate
from bench.load import Client
from bench.procs import IMAGEGEN_ENV, UNGUARDED_ENV, Double, double_args

#: The seed's body as the OpenAI-compatible endpoint takes it (``--route openai``).
OPENAI_BODY = {"model": BODY["model"], "prompt": BODY["prompt"], "n": 1, "size": "512x512"}


class OpenAIGenerate:
    """``POST /v1/images/generations`` through imagegen."""

    def __init__(self, imagegen: Client) -> None:
        self._client = imagegen

    async def __call__(self) -> int:
        path = "/v1/images/generations"
        return (await self._client.post(path, json_body=OPENAI_BODY, timeout=600)).status


async def generate(base_url: str, count: int, route: str = "seed") -> None:
    client = Client(base_url)
    try:
        call = OpenAIGenerate(client) if route == "openai" else Generate(client)
        for _ in range(count):
            if (status := await call()) != 200:
                raise RuntimeError(f"generate answered {status}")
    finally:
        client.close()


def wait_ready(base_url: str, proc: subprocess.Popen[bytes], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("imagegen exited under valgrind")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError("imagegen did not answer under valgrind")


def totals(dump: Path) -> int:
    """The instructions a callgrind dump counted (its ``totals:`` line)."""
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def count(mode: str, generations: int, warm: int, src: Path | None, route: str = "seed") -> float:
    """Instructions per generation."""
    with (
        tempfile.TemporaryDirectory(prefix="imagegen-bench-") as tmp,
        Double(*double_args(**INSTANT)) as double,
    ):
        port = free_port()
        env = {**os.environ, **IMAGEGEN_ENV, **UNGUARDED_ENV}
        env.update(
            REPLICATE_BASE_URL=double.base_url,
            IMAGEGEN_DATA_DIR=f"{tmp}/data",
            IMAGEGEN_PORT=str(port),
        )
        if mode == "passthrough":
            env["IMAGEGEN_RETURN_PROVIDER_URLS"] = "true"
        if src is not None:
            env["PYTHONPATH"] = str(src)
        out = Path(tmp) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "imagegen",
            "serve",
        ]
        with open(Path(tmp) / "valgrind.log", "wb") as log:
            proc = subprocess.Popen(command, cwd=tmp, env=env, stdout=log, stderr=log)
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_ready(base_url, proc)
            asyncio.run(generate(base_url, warm, route))
            control = ["callgrind_control", "-i", "on", str(proc.pid)]
            subprocess.run(control, check=True, capture_output=True)
            asyncio.run(generate(base_url, generations, route))
            subprocess.run(
                ["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True
            )
        finally:
            proc.terminate()
            proc.wait(timeout=120)
        return totals(Path(f"{out}.1")) / generations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["passthrough", "stored"], default="passthrough")
    parser.add_argument("--route", choices=["seed", "openai"], default="seed")
    parser.add_argument("--generations", type=int, default=300)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--src", type=Path, default=None, help="serve this src (PYTHONPATH)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    per = count(args.mode, args.generations, args.warm, args.src, args.route)
    where = args.src or "this checkout"
    print(
        f"{args.mode}, {args.route} route: {per / 1e6:.3f} M instructions per generation "
        f"({args.generations} generations, one connection, {where})"
    )


if __name__ == "__main__":
    main()
