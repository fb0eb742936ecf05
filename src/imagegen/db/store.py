"""GenerationStore: every generation is a persisted job with guarded state transitions.

    queued ──► running ──► succeeded
       │          ├──────► failed
       ├──────────┴──────► canceled
       └─────────────────► failed

Transitions are single conditional ``UPDATE ... RETURNING``s (``db/transitions.py``), so when
two replicas race, exactly one wins. The loser gets :class:`InvalidTransition` carrying the job
as it now is; a terminal job never changes again. This is deliberate: returning the current row
instead would leave ``mark_running`` unable to tell a replica whether *it* claimed the job.

A transition may owe webhook messages (``outbox=``): they are built from the job as the
transition left it and written in the same transaction, so a crash cannot lose one
(``imagegen.db.outbox``). Unfinished jobs carry a lease (``lease_owner``, ``lease_expires_at``):
the instance running a job renews it, and recovery claims only jobs whose lease is its own or has
run out (``imagegen.db.leases``).

Every method is one transaction, run by a ``Database`` (``db/database.py``: on SQLite, one
writer thread); Core statements, no ORM unit of work. A database at capacity raises
:class:`~imagegen.errors.StoreBusy` (``db/errors.py``).
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError

from imagegen.db.compiled import Fixed
from imagegen.db.creates import SqlCreates, insert_pending, pending_values
from imagegen.db.database import Database, open_database
from imagegen.db.engine import PoolSettings
from imagegen.db.leases import SqlLeases
from imagegen.db.migrate import create_engine, migrate, migrate_sqlite
from imagegen.db.outbox import SqlWebhookOutbox
from imagegen.db.queries import load_generation, load_generations, not_found
from imagegen.db.rows import (
    input_image_values,
    request_to_json,
    to_generation,
)
from imagegen.db.tables import GENERATIONS, INPUT_IMAGES, PREDICTIONS, UTCDateTime
from imagegen.db.transitions import Transition
from imagegen.errors import (
    ConfigurationError,
    IdempotencyKeyInUse,
    InvalidRequest,
    InvalidTransition,
    NotFound,
)
from imagegen.jobs.records import Outbox
from imagegen.models import (
    Generation,
    GenerationRequest,
    JobStatus,
    PendingCreate,
    PredictionRecord,
    StoredImage,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

MAX_LIST_LIMIT = 100
CANCELED_ERROR_CODE = "canceled"
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_CROCKFORD_PAIRS = [high + low for high in _CROCKFORD for low in _CROCKFORD]
_DIALECTS = ("sqlite", "postgresql")
_RETURNING_SQLITE = (3, 35)  # UPDATE ... RETURNING

_INSERT_GENERATION = Fixed(sa.insert(GENERATIONS))
_INSERT_INPUT_IMAGES = Fixed(sa.insert(INPUT_IMAGES))
# Bound parameters in a WHERE may not share a name with a column the SET clause could name.
_SET_PREDICTION_STATUS = Fixed(
    sa.update(PREDICTIONS).where(
        PREDICTIONS.c.generation_id == sa.bindparam("of_generation"),
        PREDICTIONS.c.prediction_id == sa.bindparam("of_prediction"),
    )
)
_RELEASE_KEY = Fixed(
    sa.update(GENERATIONS).where(GENERATIONS.c.id == sa.bindparam("generation_id"))
)

__all__ = [
    "GenerationStore",
    "InvalidTransition",
    "PoolSettings",
    "new_generation_id",
    "new_ulid",
    "open_store",
    "utc_now",
]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_generation_id() -> str:
    """``gen_`` + 26 lowercase Crockford base32 characters: a ULID (48-bit milliseconds, then
    80 random bits), so ids sort roughly by creation time and index inserts stay local."""
    return "gen_" + new_ulid()


def new_ulid() -> str:
    """26 lowercase Crockford base32 characters: 48-bit milliseconds, then 80 random bits."""
    return ulid_text((time.time_ns() // 1_000_000) << 80 | secrets.randbits(80))


def ulid_text(value: int) -> str:
    """The 128-bit ``value`` as 26 Crockford base32 characters, two at a time (ten bits)."""
    return "".join([_CROCKFORD_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])


async def open_store(
    url: str,
    *,
    clock: Callable[[], datetime] = utc_now,
    new_id: Callable[[], str] = new_generation_id,
    pool: PoolSettings | None = None,
) -> GenerationStore:
    """Connect to ``url``, migrate it to the latest schema, and return a store over it.

    SQLite is migrated on a synchronous engine, as the store's transactions run there: no
    ``AsyncEngine`` is made (nor SQLAlchemy's asyncio layer imported) unless asked for."""
    pool = pool or PoolSettings()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        await migrate_sqlite(parsed)
        return GenerationStore(parsed, clock=clock, new_id=new_id, pool=pool)
    engine = create_engine(parsed, pool)
    try:
        await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    return GenerationStore(engine, clock=clock, new_id=new_id, pool=pool)


class GenerationStore:
    """Generations in SQL (SQLite 3.35+ or PostgreSQL). ``engine``: an ``AsyncEngine``, or a
    SQLite database's URL (its transactions run on synchronous engines; an ``AsyncEngine`` is
    made only when :attr:`engine` is asked for). Owns the engine: :meth:`aclose` disposes of it.

    Every method raises :class:`~imagegen.errors.StoreBusy` when the database is at capacity,
    ``sqlalchemy.exc.SQLAlchemyError`` (or the driver's ``OSError``) when it fails otherwise;
    lookups by id raise :class:`~imagegen.errors.NotFound`. Times from ``clock`` must be
    timezone-aware.
    """

    def __init__(
        self,
        engine: AsyncEngine | URL,
        *,
        clock: Callable[[], datetime] = utc_now,
        new_id: Callable[[], str] = new_generation_id,
        pool: PoolSettings | None = None,
    ) -> None:
        if isinstance(engine, URL):
            dialect = engine.get_backend_name()
            if dialect != "sqlite":
                raise ValueError(f"a {dialect} store needs an AsyncEngine, not a URL")
            self._url, self._engine = engine, None
        else:
            dialect = engine.dialect.name
            self._url, self._engine = engine.url, engine
        if dialect not in _DIALECTS:
            raise ConfigurationError(f"imagegen stores jobs in SQLite or PostgreSQL, not {dialect}")
        if dialect == "sqlite" and sqlite3.sqlite_version_info < _RETURNING_SQLITE:
            raise ConfigurationError(
                f"imagegen needs SQLite 3.35 or later, not {sqlite3.sqlite_version}"
            )
        self._pool = pool or PoolSettings()
        self._db: Database = open_database(engine, self._pool)
        self._clock = clock
        self._new_id = new_id
        self._outbox = SqlWebhookOutbox(self._db, clock=clock)
        self._leases = SqlLeases(self._db, clock=clock)
        self._creates = SqlCreates(
            self._db, clock=clock, insert_prediction=Fixed(_insert_new_prediction(dialect))
        )

    @property
    def engine(self) -> AsyncEngine:
        """An ``AsyncEngine`` on the store's database (on SQLite, made on first use)."""
        if self._engine is None:
            self._engine = create_engine(self._url, self._pool)
        return self._engine

    @property
    def database(self) -> Database:
        """Where the store's transactions run; the key and usage stores share it."""
        return self._db

    @property
    def outbox(self) -> SqlWebhookOutbox:
        """The webhook outbox kept in the same database."""
        return self._outbox

    async def aclose(self) -> None:
        await self._db.aclose()
        if self._engine is not None:
            await self._engine.dispose()

    async def check(self) -> None:
        """Readiness: a read and a write probe. Raises what the database raises
        (``DatabaseUnavailable`` when it refuses writes).

        It reads the ``generations`` table rather than ``SELECT 1``, which SQLite answers
        without opening the file at all: a missing or unreadable schema must fail readiness.
        The write is an UPDATE that matches no row: it changes nothing, but a read-only
        database (file, folder, ``query_only``, ``default_transaction_read_only``, a standby)
        refuses it all the same.
        """
        await self._db.read(lambda connection: connection.execute(_CHECK).all())
        # Not a job's write: it waits its turn as a new job does, never longer.
        await self._db.write(lambda connection: connection.execute(_WRITE_PROBE), admission=True)

    async def create(
        self,
        request: GenerationRequest,
        *,
        provider: str,
        deadline_at: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        webhook_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
        lease_owner: str | None = None,
        lease_expires_at: datetime | None = None,
        owner: str | None = None,
        started: bool = False,
        creates: Sequence[PendingCreate] = (),
    ) -> Generation:
        """Persist a new ``queued`` job, leased to ``lease_owner`` when one is given; ``owner``
        is the id of the API key that created it. ``started``: the job is ``running`` already
        (its instance had a slot free for it), one write instead of a create and a
        ``mark_running``. ``creates``: the creates its provider is about to send, recorded
        pending (as ``begin_create`` records them, sent at the job's creation) in the same
        transaction.

        Raises ``IdempotencyKeyInUse`` when ``idempotency_key`` already names a job (also
        when another replica inserted it a moment earlier); compare ``request_hash`` with
        ``existing.request_hash`` to tell a retry from a conflicting reuse.
        """
        if deadline_at is not None and deadline_at.tzinfo is None:
            raise ValueError("deadline_at must be timezone-aware")
        now = self._clock()
        generation_id = self._new_id()
        values = {
            "id": generation_id,
            "status": (JobStatus.RUNNING if started else JobStatus.QUEUED).value,
            "model": request.model,
            "prompt": request.prompt,
            "provider": provider,
            "request": request_to_json(request),
            "created_at": now,
            "updated_at": now,
            "started_at": now if started else None,
            "completed_at": None,
            "deadline_at": deadline_at,
            "error": None,
            "error_code": None,
            "images_missing": 0,
            "provider_urls": [],
            "metadata": dict(metadata or {}),
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
            "webhook_url": webhook_url,
            "webhook_events": None if webhook_events is None else list(webhook_events),
            "lease_owner": lease_owner,
            "lease_expires_at": lease_expires_at,
            "owner": owner,
            "num_images": request.num_images,
            "cost": None,
            "predict_seconds": None,
        }
        inputs = input_image_values(generation_id, request)
        pending = [pending_values(generation_id, create, now) for create in creates]
        insert = partial(_insert_job, values, inputs, pending)
        try:
            await self._db.write(insert, admission=True, one_statement=not (inputs or pending))
        except IntegrityError:
            existing = None
            if idempotency_key is not None:
                existing = await self.find_by_idempotency_key(idempotency_key)
            if existing is None:
                raise
            raise IdempotencyKeyInUse(existing) from None
        return to_generation(values, request=request)

    async def _transition(self, transition: Transition) -> Generation:
        return await self._db.write(transition, one_statement=transition.one_statement)

    async def release_idempotency_key(self, generation_id: str) -> None:
        """Forget the job's idempotency key (it expired), so a new job may use it."""
        parameters = {
            "generation_id": generation_id,
            "idempotency_key": None,
            "updated_at": self._clock(),
        }
        release = partial(_RELEASE_KEY.rowcount, parameters=parameters)
        if await self._db.write(release, admission=True) == 0:  # before a new job: waits as one
            raise not_found(generation_id)

    async def mark_running(
        self, generation_id: str, *, outbox: Outbox | None = None, holder: str | None = None
    ) -> Generation:
        """queued -> running (sets ``started_at``); the replica that gets no error owns the run.
        ``holder`` (on every transition): only while that instance holds the job's lease,
        else ``LeaseLost``."""
        now = self._clock()
        values = {"started_at": now}
        return await self._transition(
            Transition(generation_id, JobStatus.RUNNING, now, values, outbox=outbox, holder=holder)
        )

    async def mark_succeeded(
        self,
        generation_id: str,
        *,
        images: Sequence[StoredImage],
        provider_urls: Sequence[str],
        images_missing: int,
        outbox: Outbox | None = None,
        cost: float | None = None,
        predict_seconds: float | None = None,
        holder: str | None = None,
        predictions: Sequence[PredictionRecord] = (),
        request: GenerationRequest | None = None,
        recorded: Sequence[PredictionRecord] = (),
    ) -> Generation:
        """running -> succeeded, storing the images in order, in the same transaction, with
        what it cost (USD) and the seconds the upstream billed, None where unknown.
        ``predictions`` not recorded yet are recorded first, in the same transaction, as
        ``add_prediction`` records them (under the same fence). ``request``: the job's, in
        hand (a job's request never changes once written): not read back. ``recorded``: the
        job's predictions the caller recorded earlier, each new (``add_prediction`` answered
        True), in the order it recorded them: when they and ``predictions`` are all the job
        has, they are not read back."""
        if images_missing < 0:
            raise ValueError("images_missing must not be negative")
        now = self._clock()
        values = {
            "completed_at": now,
            "provider_urls": list(provider_urls),
            "images_missing": images_missing,
            "cost": cost,
            "predict_seconds": predict_seconds,
        }
        transition = Transition(
            generation_id,
            JobStatus.SUCCEEDED,
            now,
            values,
            tuple(images),
            outbox=outbox,
            holder=holder,
            request=request,
            recorded=tuple(recorded),
        )
        if not predictions:
            return await self._transition(transition)
        write = partial(
            _recorded_then, self._creates.record, generation_id, predictions, transition
        )
        try:
            return await self._db.write(write)
        except IntegrityError as exc:  # the foreign key: no such generation
            raise not_found(generation_id) from exc

    async def mark_failed(
        self,
        generation_id: str,
        *,
        error: str,
        error_code: str,
        outbox: Outbox | None = None,
        cost: float | None = None,
        holder: str | None = None,
    ) -> Generation:
        """queued | running -> failed; ``cost`` when known (0 for a per-image price)."""
        now = self._clock()
        values = {"completed_at": now, "error": error, "error_code": error_code, "cost": cost}
        return await self._transition(
            Transition(generation_id, JobStatus.FAILED, now, values, outbox=outbox, holder=holder)
        )

    async def mark_canceled(
        self,
        generation_id: str,
        *,
        reason: str,
        outbox: Outbox | None = None,
        holder: str | None = None,
    ) -> Generation:
        """queued | running -> canceled; ``reason`` becomes ``error``, ``error_code`` is
        ``"canceled"``."""
        now = self._clock()
        values = {"completed_at": now, "error": reason, "error_code": CANCELED_ERROR_CODE}
        return await self._transition(
            Transition(generation_id, JobStatus.CANCELED, now, values, outbox=outbox, holder=holder)
        )

    async def add_prediction(
        self, generation_id: str, record: PredictionRecord, *, holder: str | None = None
    ) -> bool:
        """Record an upstream prediction (status ``starting``) before waiting on it, clearing
        the pending create it answers (``SqlCreates.add_prediction``).

        Allowed in any state, so a prediction started just before a cancel can still be found
        and canceled upstream. Recording the same ``prediction_id`` again is a no-op. True when
        this call recorded it new (False: recorded already, or the write cannot tell).
        """
        try:
            return await self._creates.add_prediction(generation_id, record, holder=holder)
        except IntegrityError as exc:  # the foreign key: no such generation
            raise not_found(generation_id) from exc

    async def begin_create(
        self,
        generation_id: str,
        pending: PendingCreate,
        *,
        holder: str | None = None,
        until: datetime | None = None,
    ) -> None:
        """Record a create about to be sent (``SqlCreates.begin_create``)."""
        try:
            await self._creates.begin_create(generation_id, pending, holder=holder, until=until)
        except IntegrityError as exc:
            raise not_found(generation_id) from exc

    async def pending_creates(self, generation_id: str) -> builtins.list[PendingCreate]:
        """The job's creates whose reply was never recorded (``SqlCreates.pending_creates``)."""
        return await self._creates.pending_creates(generation_id)

    async def adopt_prediction(
        self,
        generation_id: str,
        record: PredictionRecord,
        *,
        sole: bool = False,
        holder: str | None = None,
    ) -> bool:
        """Record an orphan found upstream unless a job has it (``SqlCreates``)."""
        return await self._creates.adopt_prediction(generation_id, record, sole=sole, holder=holder)

    async def set_prediction_status(
        self, generation_id: str, prediction_id: str, status: str
    ) -> None:
        """Record the provider's latest status of a prediction (``processing``, ``failed``...)."""
        parameters = {
            "of_generation": generation_id,
            "of_prediction": prediction_id,
            "status": status,
            "updated_at": self._clock(),
        }
        updated = await self._db.write(
            partial(_SET_PREDICTION_STATUS.rowcount, parameters=parameters)
        )
        if updated == 0:
            raise NotFound(f"prediction {prediction_id!r} of {generation_id!r} not found")

    async def get(self, generation_id: str) -> Generation:
        """The job with its predictions and images; :class:`NotFound` when there is none."""
        return await self._db.read(partial(load_generation, generation_id=generation_id))

    async def list(
        self, *, limit: int, cursor: str | None = None, owner: str | None = None
    ) -> tuple[builtins.list[Generation], str | None]:
        """A page of jobs, newest first, and the cursor of the next page (``None`` at the end);
        only ``owner``'s when one is given.

        ``limit`` must be in 1..``MAX_LIST_LIMIT``; a malformed cursor is an ``InvalidRequest``.
        """
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidRequest(f"limit must be between 1 and {MAX_LIST_LIMIT}", field="limit")
        order = (GENERATIONS.c.created_at, GENERATIONS.c.id)
        stmt = sa.select(GENERATIONS).order_by(*(column.desc() for column in order))
        stmt = stmt.limit(limit + 1)
        if owner is not None:
            stmt = stmt.where(GENERATIONS.c.owner == owner)
        if cursor is not None:
            created_at, last_id = _decode_cursor(cursor)
            after = sa.tuple_(sa.literal(created_at, UTCDateTime()), sa.literal(last_id))
            stmt = stmt.where(sa.tuple_(*order) < after)
        found = await self._db.read(partial(load_generations, stmt=stmt))
        page = found[:limit]
        next_cursor = _encode_cursor(page[-1]) if len(found) > limit else None
        return page, next_cursor

    async def list_unfinished(self) -> builtins.list[Generation]:
        """Queued and running jobs, oldest first (``SqlLeases.list_unfinished``)."""
        return await self._leases.list_unfinished()

    async def claim(
        self, generation_id: str, *, owner: str, until: datetime, include_own: bool = True
    ) -> bool:
        """Lease an unfinished job to ``owner``; True when it is now ``owner``'s
        (``SqlLeases.claim``)."""
        return await self._leases.claim(
            generation_id, owner=owner, until=until, include_own=include_own
        )

    async def claim_free(
        self, owner: str, *, until: datetime, limit: int, exclude: Sequence[str] = ()
    ) -> builtins.list[Generation]:
        """Lease free or expired unfinished jobs to ``owner`` (``SqlLeases.claim_free``)."""
        return await self._leases.claim_free(owner, until=until, limit=limit, exclude=exclude)

    async def claim_own(self, owner: str, *, until: datetime) -> builtins.list[Generation]:
        """Take back ``owner``'s unfinished jobs (``SqlLeases.claim_own``)."""
        return await self._leases.claim_own(owner, until=until)

    async def waiting(self, provider: str, *, limit: int) -> int:
        """Jobs waiting unleased for room (``SqlLeases.waiting``)."""
        return await self._leases.waiting(provider, limit=limit)

    async def held_elsewhere(self, owner: str, generation_ids: Sequence[str]) -> set[str]:
        """Which of these unfinished jobs another instance holds (``SqlLeases``)."""
        return await self._leases.held_elsewhere(owner, generation_ids)

    async def renew_leases(
        self, owner: str, generation_ids: Sequence[str], *, until: datetime
    ) -> int:
        """Extend ``owner``'s leases on these unfinished jobs (``SqlLeases.renew_leases``)."""
        return await self._leases.renew_leases(owner, generation_ids, until=until)

    async def release_leases(self, owner: str, generation_ids: Sequence[str]) -> int:
        """Hand ``owner``'s unfinished jobs back (``SqlLeases.release_leases``)."""
        return await self._leases.release_leases(owner, generation_ids)

    async def find_by_idempotency_key(self, key: str) -> Generation | None:
        stmt = sa.select(GENERATIONS).where(GENERATIONS.c.idempotency_key == key)
        found = await self._db.read(partial(load_generations, stmt=stmt))
        return found[0] if found else None


_CHECK = sa.select(GENERATIONS.c.id).limit(1)
_WRITE_PROBE = sa.update(GENERATIONS).where(GENERATIONS.c.id.is_(None)).values(id=GENERATIONS.c.id)
_CURSOR_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CURSOR_YEARS = (1970, 9998)  # what both databases hold, with a margin for time zones


def _insert_new_prediction(dialect: str) -> sa.Insert:
    """An INSERT that does nothing when the generation has that prediction id already."""
    keys = ["generation_id", "prediction_id"]
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql  # loaded with its driver; SQLite never needs it

        return postgresql.insert(PREDICTIONS).on_conflict_do_nothing(index_elements=keys)
    return sqlite.insert(PREDICTIONS).on_conflict_do_nothing(index_elements=keys)


def _execute(stmt: sa.Executable, parameters: Mapping[str, Any], connection: sa.Connection) -> None:
    connection.execute(stmt, parameters)


def _insert_job(
    values: Mapping[str, Any],
    inputs: Sequence[Mapping[str, Any]],
    pending: Sequence[Mapping[str, Any]],
    connection: sa.Connection,
) -> None:
    """The job, the keys of its input images and its pending creates, in one transaction (one
    statement without the last two)."""
    _INSERT_GENERATION.execute(connection, values)
    _INSERT_INPUT_IMAGES.executemany(connection, inputs)
    insert_pending(connection, pending)


def _encode_cursor(last: Generation) -> str:
    raw = json.dumps([last.created_at.isoformat(), last.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """A cursor this store made: anything else (malformed, or a time no database can hold) is
    an ``InvalidRequest`` naming ``cursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, last_id = json.loads(raw)
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None:
            raise ValueError("a cursor's time is in UTC")
        created_at = created_at.astimezone(UTC)
    except (binascii.Error, ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest("cursor: not a cursor this server returned", field="cursor") from exc
    if (
        not isinstance(last_id, str)
        or not _CURSOR_ID.match(last_id)
        or not _CURSOR_YEARS[0] <= created_at.year <= _CURSOR_YEARS[1]
    ):
        raise InvalidRequest("cursor: not a cursor this server returned", field="cursor")
    return created_at, last_id


def _recorded_then(
    record: Callable[[str, PredictionRecord, sa.Connection], bool],
    generation_id: str,
    predictions: Sequence[PredictionRecord],
    transition: Transition,
    connection: sa.Connection,
) -> Generation:
    """``predictions`` recorded, then ``transition``, in one transaction: a transition that
    raises (a lost race, a lost lease) takes the records back with it. When each of them was
    new, the transition is told which they are (``Transition.recorded``)."""
    new = [record(generation_id, prediction, connection) for prediction in predictions]
    known = (*transition.recorded, *predictions) if all(new) else ()
    return replace(transition, recorded=known)(connection)
