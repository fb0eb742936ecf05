"""Runner tests run on the real store over a fresh SQLite file (about 20 ms to open)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.scripted_provider import FakeIngestor
from tests.jobs.fakes import GatedProvider

from imagegen.catalog import Catalog
from imagegen.db import GenerationStore, open_store
from imagegen.jobs.runner import JobRunner
from imagegen.models import GenerationRequest

REQUEST = GenerationRequest(model="owner/model", prompt="cat", num_images=2, width=512, height=512)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[GenerationStore]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}")
    yield opened
    await opened.aclose()


@pytest.fixture
def gated() -> GatedProvider:
    return GatedProvider()


def runner_for(store: GenerationStore, provider: Any, **options: Any) -> JobRunner:
    options.setdefault("ingestor", FakeIngestor())
    options.setdefault("timeout", 5.0)
    options.setdefault("owner", "instance-a")
    return JobRunner(store=store, catalog=Catalog(default=provider), **options)


@pytest.fixture
async def runners() -> AsyncIterator[list[JobRunner]]:
    """Runners a test registers here are closed after it."""
    made: list[JobRunner] = []
    yield made
    for runner in made:
        await runner.aclose()
