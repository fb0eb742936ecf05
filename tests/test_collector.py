"""``imagegen serve`` freezes what start-up made out of the garbage collector's sight, once its
services are up: full collections then walk only what requests made since. It starts with the
collector paused; every other command collects as usual."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

from fastapi.testclient import TestClient

from imagegen import collector
from imagegen.api.app import create_app
from imagegen.collector import YOUNG_THRESHOLD, tune_collector
from imagegen.config import Settings


class Node:
    other: Any = None


def test_start_up_garbage_is_collected_the_rest_frozen_and_the_young_threshold_raised() -> None:
    first, second = Node(), Node()
    first.other, second.other = second, first  # a cycle only the collector frees
    gone = weakref.ref(first)
    del first, second
    kept = Node()
    thresholds = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *thresholds[1:])
        assert gone() is None
        assert gc.get_freeze_count() > 0
        assert all(obj is not kept for obj in gc.get_objects())  # out of every generation
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert any(obj is kept for obj in gc.get_objects())


def test_started_runs_once_the_services_are_up_and_before_the_first_request(tmp_path) -> None:
    seen: list[object] = []

    @asynccontextmanager
    async def services(settings: Settings) -> AsyncIterator[Any]:
        yield SimpleNamespace(image_store=None)

    def started() -> None:
        seen.append(getattr(app.state, "services", None))

    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    app = create_app(settings, services=services, started=started)  # type: ignore[arg-type]
    assert seen == []
    with TestClient(app):
        assert len(seen) == 1
        assert seen[0] is app.state.services
    assert len(seen) == 1


def test_a_start_up_that_ran_paused_is_frozen_without_a_full_collection() -> None:
    collections: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    thresholds = gc.get_threshold()
    collector.pause()
    gc.callbacks.append(seen)
    try:
        assert not gc.isenabled()
        collector.tune_collector()
        assert collections == []  # no walk of everything start-up made
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(seen)
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        gc.enable()


def _collecting_after(*args: str) -> str:
    """Whether the collector runs after ``imagegen ARGS``, run as the ``imagegen`` command runs
    (a bad setting stops each command before it does anything)."""
    code = f"""
        import gc, sys
        from imagegen import cli
        sys.argv = ["imagegen", *{list(args)!r}]
        try:
            cli.main()
        except SystemExit:
            pass
        print(gc.isenabled())
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"IMAGEGEN_PORT": "not-a-port", "PATH": os.environ.get("PATH", "")},
    )
    assert "invalid setting IMAGEGEN_PORT" in done.stderr, done.stderr
    return done.stdout.strip()


def test_commands_other_than_serve_collect_as_usual() -> None:
    assert _collecting_after("keys", "list") == "True"


def test_serve_starts_with_the_collector_paused_until_its_app_has_started() -> None:
    assert _collecting_after("serve") == "False"  # it stopped before starting: still paused
