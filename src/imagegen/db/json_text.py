"""The text SQLite stores for a JSON column: orjson's, compact, in a tenth of ``json.dumps``'s
time (a job's writes serialise half a dozen documents). A value orjson refuses (an integer past 64
bits, a key that is not a string) is written by ``json.dumps``, as before. Documents are read by
``json.loads`` still: orjson would read an integer past 64 bits as a float.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def json_text(value: Any) -> str:
    """``value`` as JSON text (what a ``JSONDocument`` column holds on SQLite)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)
