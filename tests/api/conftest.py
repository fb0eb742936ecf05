"""An app over a scripted provider and a fake ingestor, with the real job machinery (SQLite store,
limits, webhook worker, recovery) built by ``imagegen.jobs.setup.start_runner``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.fakes.scripted_provider import FakeIngestor, ScriptedProvider

from imagegen.api.app import create_app
from imagegen.api.deps import Services
from imagegen.api.schemas import webhook_renderer
from imagegen.catalog import Catalog
from imagegen.config import Settings
from imagegen.db import GenerationStore, open_store
from imagegen.jobs.protocols import Ingestor
from imagegen.jobs.runner import JobRunner
from imagegen.jobs.setup import start_runner
from imagegen.services import build_inputs
from imagegen.storage.local import LocalImageStore

WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItaW1hZ2VnZW4tdGVzdHMtMzI="  # 32 bytes


class FakeWorld:
    """``store`` and ``runner`` exist while an app built on ``services`` is running."""

    def __init__(self, tmp_path: Path, **settings: object) -> None:
        self.tmp_path = tmp_path
        values: dict[str, object] = {"data_dir": tmp_path, "request_timeout": 5, **settings}
        self.settings = Settings(**values)  # type: ignore[arg-type]
        self.provider = ScriptedProvider()
        self.image_store = LocalImageStore(tmp_path / "images")
        self.database_url = f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}"
        self.ingestor: Ingestor = FakeIngestor()
        self.store: GenerationStore
        self.runner: JobRunner

    @asynccontextmanager
    async def services(self, settings: Settings) -> AsyncIterator[Services]:
        async with AsyncExitStack() as stack:
            self.store = await open_store(self.database_url)
            stack.push_async_callback(self.store.aclose)
            catalog = Catalog(default=self.provider)
            self.runner = await start_runner(
                stack,
                settings,
                store=self.store,
                catalog=catalog,
                ingestor=self.ingestor,
                render=webhook_renderer("http://testserver"),
            )
            yield Services(
                settings=settings,
                runner=self.runner,
                catalog=catalog,
                store=self.store,
                image_store=self.image_store,
                inputs=build_inputs(stack, settings, self.image_store),
            )


@pytest.fixture
def world(tmp_path: Path) -> FakeWorld:
    return FakeWorld(tmp_path)


@pytest.fixture
def client(world: FakeWorld) -> Iterator[TestClient]:
    app = create_app(world.settings, services=world.services)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
