"""A base for the test servers and processes: ``with X(...) as x`` starts it and stops it."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Started:
    """``start()`` returns the started object; ``stop()`` is safe to call more than once."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
