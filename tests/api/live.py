"""The app of ``tests/api/conftest.py`` served over real HTTP, by the uvicorn configuration
``imagegen serve`` uses (``imagegen.serving``), on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from tests.api.conftest import FakeWorld
from tests.support.threaded_server import ThreadedServer, bind_loopback

from imagegen.api.app import create_app
from imagegen.serving import uvicorn_config


@contextmanager
def served(tmp_path: Path, **settings: object) -> Iterator[tuple[str, FakeWorld]]:
    """``(base_url, world)`` while the app runs; ``settings`` override the world's."""
    world = FakeWorld(tmp_path, **settings)
    app = create_app(world.settings, services=world.services)
    sock = bind_loopback()
    host, port = sock.getsockname()
    server = ThreadedServer(
        uvicorn.Server(uvicorn_config(app, world.settings, log_level="warning")), name="imagegen"
    )
    server.start(sock)
    try:
        yield f"http://{host}:{port}", world
    finally:
        server.stop()
        sock.close()
