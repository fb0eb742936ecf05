"""Fixtures shared by the tests of imagegen.db."""

from __future__ import annotations

from typing import Any

import pytest

from imagegen.db.database import SQLiteDatabase


@pytest.fixture
def groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each group the writers of databases made from now on run."""
    sizes: list[int] = []
    grouped = SQLiteDatabase._write_group

    def counting(self: SQLiteDatabase, calls: list[Any]) -> Any:
        sizes.append(len(calls))
        return grouped(self, calls)

    monkeypatch.setattr(SQLiteDatabase, "_write_group", counting)
    return sizes
