"""How ``imagegen serve`` runs uvicorn: on uvloop, with httptools' parser."""

from __future__ import annotations

import asyncio
from pathlib import Path

import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from imagegen.config import Settings
from imagegen.serving import HeaderTimeoutProtocol, uvicorn_config


async def _app(scope: object, receive: object, send: object) -> None:
    return None


def test_serve_runs_on_uvloop_and_httptools(tmp_path: Path) -> None:
    config = uvicorn_config(_app, Settings(data_dir=tmp_path))
    assert config.loop == "uvloop"
    assert isinstance(config.http, type)
    assert issubclass(config.http, HeaderTimeoutProtocol)
    assert issubclass(config.http, HttpToolsProtocol)
    factory = config.get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()
