"""Local faults (a full or unwritable image folder, a read-only database, a disk below its
free-space floor) are a 503 with Retry-After in each endpoint's own error shape, never a 500 or a
502 that blames the provider; /readyz names each; when the fault passes, service resumes and
nothing stored before is lost."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from anyio.from_thread import start_blocking_portal
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from tests.api.conftest import FakeWorld
from tests.db import postgres_database
from tests.fakes.images import make_image, palette_color

from imagegen.api.app import create_app
from imagegen.ingest import ImageIngestor
from imagegen.models import StoredImage
from imagegen.storage.local import LocalImageStore

SEED = "/api/v1/images/generate"
OPENAI = "/v1/images/generations"
BODY = {"model": "owner/model", "prompt": "a cat", "num_images": 1, "width": 512, "height": 512}


class FaultyDisk(LocalImageStore):
    """The real local store, on a disk that can be made to refuse writes as a full one does."""

    fault: int | None = None

    def _stage_bytes(self, data: bytes) -> Path:
        if self.fault is not None:
            raise OSError(self.fault, "injected")
        return super()._stage_bytes(data)

    def _probe_sync(self) -> None:
        if self.fault is not None:
            raise OSError(self.fault, "injected")
        super()._probe_sync()


class _Limits:
    max_bytes = 10 * 1024 * 1024


class InlineIngestor:
    """The real ingestor, given each output's bytes inline (no download)."""

    def __init__(self, store: LocalImageStore) -> None:
        self._real = ImageIngestor(store, _Limits())  # type: ignore[arg-type]
        self._count = 0

    async def ingest(self, url: str) -> StoredImage:
        self._count += 1  # new bytes each time: a stored key is never written again
        image = make_image(64, 64, "png", palette_color(self._count))
        return await self._real.ingest_bytes(image, source_url=url)


def _seed(client: TestClient, **headers: str):
    return client.post(SEED, json=BODY, headers=headers)


def _openai(client: TestClient):
    return client.post(OPENAI, json={"prompt": "a cat", "model": "owner/model"})


def _assert_503(response, *, openai: bool, mentions: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    if openai:
        assert error["type"] == "server_error"
        message = error["message"]
    else:
        assert isinstance(error, str)
        message = error
    assert mentions in message, message


@pytest.fixture
def disk_world(tmp_path) -> Iterator[tuple[TestClient, FakeWorld, FaultyDisk]]:
    world = FakeWorld(tmp_path)
    disk = FaultyDisk(tmp_path / "images")
    world.image_store = disk
    world.ingestor = InlineIngestor(disk)
    app = create_app(world.settings, services=world.services)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, world, disk


@pytest.mark.parametrize("fault", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_an_image_folder_that_refuses_writes_is_503_not_502(disk_world, fault):
    client, _world, disk = disk_world
    before = _seed(client)
    assert before.status_code == 200, before.text
    disk.fault = fault
    _assert_503(_seed(client), openai=False, mentions="image folder")
    _assert_503(_openai(client), openai=True, mentions="image folder")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.headers["retry-after"]
    assert ready.json()["checks"]["storage"].startswith("error: image directory")
    assert ready.json()["checks"]["database"] == "ok"
    disk.fault = None  # space returns
    after = _seed(client)
    assert after.status_code == 200, after.text
    assert client.get("/readyz").status_code == 200
    kept = client.get(before.json()["images"][0]["url"].replace("http://testserver", ""))
    assert kept.status_code == 200  # stored before the fault, served after it


def test_below_the_free_space_floor_creates_are_refused_before_any_prediction(disk_world):
    client, world, _ = disk_world
    assert _seed(client).status_code == 200
    calls = len(world.provider.calls)
    world.settings.min_free_bytes = 2**62  # more than any disk has free
    _assert_503(_seed(client), openai=False, mentions="IMAGEGEN_MIN_FREE_BYTES")
    _assert_503(_openai(client), openai=True, mentions="IMAGEGEN_MIN_FREE_BYTES")
    assert len(world.provider.calls) == calls  # nothing was paid for
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "IMAGEGEN_MIN_FREE_BYTES" in ready.json()["checks"]["disk"]
    world.settings.min_free_bytes = 0  # space returns
    assert client.get("/readyz").status_code == 200
    assert _seed(client).status_code == 200
    assert len(client.get("/api/v1/generations").json()["data"]) == 2


class ReadOnlySwitch:
    """Makes the world's database refuse writes, and writable again, as an operator would."""

    def __init__(self, world: FakeWorld, portal, admin_url: str | None) -> None:
        self.world = world
        self.portal = portal
        self.admin_url = admin_url

    def set(self, read_only: bool) -> None:
        self.portal.call(self._set, read_only)

    async def _set(self, read_only: bool) -> None:
        store = self.world.store
        if self.admin_url is None:  # SQLite: on the one writer connection, outside a transaction
            database = store._db
            pragma = f"PRAGMA query_only = {int(read_only)}"

            def on_writer() -> None:
                connection = database._writer_conn()
                connection.connection.driver_connection.execute(pragma)

            await database._writer.run(on_writer)
            return
        name = make_url(self.world.database_url).database
        admin = create_async_engine(
            self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool
        )
        async with admin.connect() as connection:
            value = "on" if read_only else "off"
            await connection.execute(
                sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')
            )
        await admin.dispose()
        await store.engine.dispose()  # new connections take the database's new default


@pytest.fixture(params=["sqlite", "postgresql"])
def db_world(request, tmp_path) -> Iterator[tuple[TestClient, ReadOnlySwitch]]:
    world = FakeWorld(tmp_path)
    with start_blocking_portal() as portal:
        if request.param == "postgresql":
            from tests.db import POSTGRES_URL

            with portal.wrap_async_context_manager(postgres_database()) as url:
                world.database_url = url
                app = create_app(world.settings, services=world.services)
                with TestClient(app, raise_server_exceptions=False) as client:
                    yield client, ReadOnlySwitch(world, portal, POSTGRES_URL)
        else:
            app = create_app(world.settings, services=world.services)
            with TestClient(app, raise_server_exceptions=False) as client:
                yield client, ReadOnlySwitch(world, portal, None)


def test_a_read_only_database_is_503_and_service_resumes(db_world):
    client, switch = db_world
    before = _seed(client)
    assert before.status_code == 200, before.text
    switch.set(read_only=True)
    _assert_503(_seed(client), openai=False, mentions="read-only")
    _assert_503(_seed(client, prefer="respond-async"), openai=False, mentions="read-only")
    _assert_503(_openai(client), openai=True, mentions="read-only")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "read-only" in ready.json()["checks"]["database"]
    listed = client.get("/api/v1/generations")  # reads still work
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["data"]] == [before.json()["id"]]
    switch.set(read_only=False)
    assert client.get("/readyz").status_code == 200
    after = _seed(client)
    assert after.status_code == 200, after.text
    ids = {item["id"] for item in client.get("/api/v1/generations").json()["data"]}
    assert ids == {before.json()["id"], after.json()["id"]}


class _FullFile:
    """A spool file on a disk that fills up as the download is written."""

    def __init__(self, real) -> None:
        self.real = real

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        self.real.close()


def test_a_download_spooled_to_a_full_disk_is_a_storage_fault_not_a_fetch_error(tmp_path):
    from imagegen.errors import ImageFetchError, StorageUnavailable
    from imagegen.fetch import _Spool

    spool = _Spool(tmp_path)
    spool.file = _FullFile(spool.file)
    with pytest.raises(StorageUnavailable, match="No space left") as caught:
        spool.write(b"\x89PNG")
    assert not isinstance(caught.value, ImageFetchError)
    spool.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_disk_fault_no_layer_named_is_still_503(tmp_path):
    world = FakeWorld(tmp_path)
    app = create_app(world.settings, services=world.services)

    @app.get("/v1/broken-disk")
    async def broken() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with TestClient(app, raise_server_exceptions=False) as client:
        _assert_503(client.get("/v1/broken-disk"), openai=True, mentions="No space left")
