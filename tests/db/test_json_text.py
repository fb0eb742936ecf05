"""The JSON text SQLite's JSON columns hold (``db/json_text.py``): orjson's, read back by
``json.loads`` as the same value; what orjson refuses is written by ``json.dumps``."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegen.db.engine import sqlite_engine
from imagegen.db.json_text import json_text
from imagegen.db.tables import JSONDocument

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner), st.dictionaries(st.text(), inner)),
    max_leaves=20,
)


@settings(max_examples=300, derandomize=True, database=None)
@given(DOCUMENTS)
def test_what_is_written_reads_back_as_the_same_value(document: object) -> None:
    assert json.loads(json_text(document)) == document


def test_what_orjson_refuses_is_written_as_json_dumps_writes_it() -> None:
    huge = {"seed": 2**70}  # past 64 bits
    assert json_text(huge) == json.dumps(huge)
    assert json.loads(json_text(huge)) == huge
    keyed = {1: "a"}  # a key that is not a string
    assert json_text(keyed) == json.dumps(keyed)


def test_a_sqlite_engine_writes_json_columns_with_it(tmp_path: Path) -> None:
    engine = sqlite_engine(sa.make_url(f"sqlite:///{tmp_path / 'j.db'}"), connections=1, timeout=5)
    table = sa.Table("t", sa.MetaData(), sa.Column("doc", JSONDocument))
    document = {"prompt": "caf\u00e9 \U0001f408", "n": 1, "urls": ["https://x/a.png"]}
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(sa.insert(table), {"doc": document})
        stored = connection.execute(sa.text("SELECT doc FROM t")).scalar_one()
        assert stored == json_text(document)  # compact UTF-8, as orjson writes it
        assert connection.execute(sa.select(table.c.doc)).scalar_one() == document
    engine.dispose()
