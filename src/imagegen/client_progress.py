"""What ``imagegen generate`` shows while a job runs: its state, the percentage when the provider
reports one, and the time elapsed. A terminal gets a live Rich progress bar; a pipe or a log
gets one plain line per change."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)


class JobProgress:
    """``update(state, fraction)`` as events arrive; a context manager around the wait."""

    def __init__(self, console: Console, generation_id: str) -> None:
        self._console = console
        self._started = time.monotonic()
        self._last: tuple[str, int | None] | None = None
        self._live: Progress | None = None
        self._task: TaskID | None = None
        if console.is_terminal:
            self._live = Progress(
                SpinnerColumn(),
                TextColumn(f"{generation_id} [bold]{{task.description}}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )

    def __enter__(self) -> Self:
        if self._live is not None:
            self._live.start()
            self._task = self._live.add_task("queued", total=None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def update(self, state: str, fraction: float | None) -> None:
        percent = None if fraction is None else round(max(0.0, min(1.0, fraction)) * 100)
        if (state, percent) == self._last:
            return
        self._last = (state, percent)
        if self._live is not None and self._task is not None:
            self._live.update(
                self._task,
                description=state,
                total=None if percent is None else 100,
                completed=percent or 0,
            )
            return
        shown = f" {percent}%" if percent is not None else ""
        self._console.print(f"[{self.elapsed():6.1f}s] {state}{shown}", highlight=False)
