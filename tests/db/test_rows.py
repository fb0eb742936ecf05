"""The values the store writes for a job: its request as JSON, its id, its timestamps."""

from __future__ import annotations

import secrets
from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from imagegen.db.rows import request_from_json, request_to_json
from imagegen.db.store import new_ulid, ulid_text
from imagegen.db.tables import UTCDateTime
from imagegen.models import GenerationRequest, StoredImage

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
IMAGE = StoredImage("ab/cd.png", "image/png", 64, 32, 1234, "https://x.test/a.png", "a cat")


def test_a_request_as_json_is_what_asdict_makes_of_it_for_every_field() -> None:
    full = GenerationRequest(
        "o/m", "p", 2, 512, 768, 7, "fog", "png", images=(IMAGE, IMAGE), mask=IMAGE
    )
    assert {f.name for f in fields(GenerationRequest)} == set(request_to_json(full))
    assert {f.name for f in fields(StoredImage)} == set(request_to_json(full)["mask"])
    for request in (GenerationRequest("o/m", "p", 1, 64, 64), full):
        assert request_to_json(request) == asdict(request)
        assert request_from_json(request_to_json(request)) == request


def reference_ulid_text(value: int) -> str:
    """One character per five bits, most significant first."""
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def test_ulid_text_is_crockford_base32_of_128_bits() -> None:
    for value in [0, 1, (1 << 128) - 1, *(secrets.randbits(128) for _ in range(2000))]:
        assert ulid_text(value) == reference_ulid_text(value)
    ulid = new_ulid()
    assert len(ulid) == 26
    assert set(ulid) <= set(CROCKFORD)


def sqlalchemy_processors(dialect: sa.Dialect) -> tuple[Any, Any]:
    """SQLAlchemy's own conversions of a ``UTCDateTime``: ``process_bind_param`` then the
    dialect's DATETIME, its parsing then ``process_result_value``."""
    type_ = UTCDateTime()
    impl = type_.impl_instance.dialect_impl(dialect)
    bind, result = impl.bind_processor(dialect), impl.result_processor(dialect, None)

    def bound(value: datetime) -> Any:
        return bind(type_.process_bind_param(value, dialect))

    def read(text: str) -> Any:
        return type_.process_result_value(result(text), dialect)

    return bound, read


def test_sqlite_timestamps_bind_and_read_as_sqlalchemy_converts_them() -> None:
    dialect = sqlite.dialect()
    bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    read = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert bind is not None
    assert read is not None
    bound_reference, read_reference = sqlalchemy_processors(dialect)
    zones = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
    times = [
        datetime(1, 1, 2, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 1, tzinfo=zones[1]),  # the day before in UTC
        datetime(9999, 12, 31, 12, tzinfo=UTC),
        datetime.now(UTC),
        *(
            datetime.fromtimestamp(secrets.randbelow(10**10) / 1000, random_zone)
            for random_zone in zones * 300
        ),
    ]
    for value in times:
        text = bind(value)
        assert text == bound_reference(value)
        assert len(text) == 26
        assert read(text) == read_reference(text) == value
        assert read(text).tzinfo is UTC
    # Text SQLAlchemy wrote without microseconds, or by hand with an offset, reads the same.
    for text in ["2026-01-02 03:04:05", "2026-01-02 03:04:05.000001", "2026-01-02T03:04:05+02:00"]:
        assert read(text) == read_reference(text)
        assert read(text).tzinfo is UTC
    assert bind(None) is None
    assert read(None) is None
    with pytest.raises(ValueError, match="naive"):
        bind(datetime(2026, 1, 1))


def test_a_time_bound_again_is_the_same_text_and_another_time_its_own() -> None:
    dialect = sqlite.dialect()
    bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None
    now = datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=UTC)
    assert bind(now) == bind(now) == "2026-11-30 01:02:03.456789"  # the second, remembered
    equal_elsewhere = now.astimezone(timezone(timedelta(hours=2)))  # equal, not the same object
    assert bind(equal_elsewhere) == "2026-11-30 01:02:03.456789"
    later = now + timedelta(microseconds=1)
    assert bind(later) == "2026-11-30 01:02:03.456790"
    assert bind(now) == "2026-11-30 01:02:03.456789"
    with pytest.raises(ValueError, match="naive"):
        bind(datetime(2026, 1, 1))  # after a remembered one: still checked


def test_other_dialects_keep_sqlalchemy_conversions() -> None:
    dialect = postgresql.dialect()
    bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    value = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    converted = value if bind is None else bind(value)
    assert converted == value
    assert converted.utcoffset() == timedelta(0)
