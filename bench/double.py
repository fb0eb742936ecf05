"""The Replicate double, launched for benchmarks: same app, same CLI, a faster server set-up.

``python -m tests.fakes.replicate_double`` serves on the stock asyncio loop from a socket made
with ``socket.socket()``, whose ``proto`` is 0, so asyncio never sets ``TCP_NODELAY`` on the
connections it accepts: a response written as headers then body waits out the client's delayed
ACK, about 40 ms a request. That is harmless for tests and fatal for a latency baseline, so
here the socket is a real TCP one (``IPPROTO_TCP``, ``TCP_NODELAY``) and the loop is uvloop's,
as ``imagegen serve`` gets from uvicorn. Everything else is the double's own code.

    python -m bench.double --port 0 --token T --duration 0 ...   # prints READY <base_url>
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from tests.fakes.replicate.app import create_double_app
from tests.fakes.replicate.config import DoubleConfig
from tests.fakes.replicate.server import _CLI_FIELDS, parse_args
from tests.fakes.replicate.state import DoubleState


def tcp_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    fields = {k: getattr(args, k) for k in [*_CLI_FIELDS, "low_credit"]}
    config = DoubleConfig(**{k: v for k, v in fields.items() if v is not None})
    sock = tcp_socket(args.host, args.port)
    server = uvicorn.Server(
        uvicorn.Config(
            create_double_app(state=DoubleState(config)),
            log_level=args.log_level,
            access_log=False,
            lifespan="off",
            backlog=8192,
            timeout_keep_alive=60,
            timeout_graceful_shutdown=1,
        )
    )

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"READY http://{args.host}:{sock.getsockname()[1]}", flush=True)
        await task

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        asyncio.run(serve())
    else:
        uvloop.run(serve())


if __name__ == "__main__":
    main()
