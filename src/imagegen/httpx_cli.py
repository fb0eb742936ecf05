"""httpx's command-line client (``httpx._main``), left unloaded.

``import httpx`` imports its command-line client whenever that client's dependencies (rich,
Pygments, click) are installed, and imagegen installs rich for its own client: about 4 MB and
some 30 ms of every imagegen process's start-up, for a client imagegen never runs. ``defer()``
puts a stand-in for ``httpx._main`` in ``sys.modules`` before httpx is first imported; its
``main`` (what httpx's console script calls) imports the real client and runs it.
"""

from __future__ import annotations

import importlib
import sys
import types

NAME = "httpx._main"


def defer() -> None:
    """Leave httpx's command-line client out of ``import httpx`` (nothing to do once httpx is
    imported)."""
    if "httpx" in sys.modules or NAME in sys.modules:
        return
    stand_in = types.ModuleType(NAME, "httpx's command-line client, imported when main() runs")
    stand_in.main = main  # type: ignore[attr-defined]
    sys.modules[NAME] = stand_in


def main(*args: object, **kwargs: object) -> object:
    """httpx's ``main``: the real client, imported now."""
    stand_in = sys.modules.get(NAME)
    if stand_in is not None and getattr(stand_in, "main", None) is main:
        del sys.modules[NAME]
    return importlib.import_module(NAME).main(*args, **kwargs)
