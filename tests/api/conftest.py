"""An app over in-memory fakes: scripted provider, memory store, fake ingestor, local images."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.fakes.memory_store import MemoryStore
from tests.fakes.scripted_provider import FakeIngestor, ScriptedProvider

from imagegen.api.app import create_app
from imagegen.api.deps import Services
from imagegen.catalog import Catalog
from imagegen.config import Settings
from imagegen.jobs.runner import JobRunner
from imagegen.storage.local import LocalImageStore


class FakeWorld:
    def __init__(self, tmp_path: Path) -> None:
        self.settings = Settings(data_dir=tmp_path, request_timeout=5)
        self.provider = ScriptedProvider()
        self.store = MemoryStore()
        self.image_store = LocalImageStore(tmp_path / "images")

    @asynccontextmanager
    async def services(self, settings: Settings) -> AsyncIterator[Services]:
        runner = JobRunner(
            store=self.store,
            catalog=Catalog(default=self.provider),
            ingestor=FakeIngestor(),
            timeout=settings.request_timeout,
        )
        yield Services(
            settings=settings,
            runner=runner,
            catalog=Catalog(default=self.provider),
            store=self.store,
            image_store=self.image_store,
        )
        await runner.aclose()


@pytest.fixture
def world(tmp_path: Path) -> FakeWorld:
    return FakeWorld(tmp_path)


@pytest.fixture
def client(world: FakeWorld) -> Iterator[TestClient]:
    app = create_app(world.settings, services=world.services)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
